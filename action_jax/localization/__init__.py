"""Temporal action localization around the BMN/BSN models: ActivityNet-style feature data,
training targets, proposal post-processing, result files, a synthetic set, visualisation."""
