"""TSM on the embedded synthetic data set: tsn_synthetic.py with the temporal shift.

Same data, pipelines, segments (8), ResNet-18 (3 stages at 48 px), schedule and batch as
tsn_synthetic.py, so that the difference in accuracy is temporal modelling alone. As in
tsm_k400.py: ResNetTSM with shift_div 8 ('blockres'), TSMHead (dropout 0.5, init std 0.001)
and MMAction2's `fc_lr5` parameter groups. A quarter of the channels moves one segment
forward or back in every residual block, so the network compares neighbouring frames and
sees which way the object moves, which TSN's average over frames cannot.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import tsn_synthetic  # noqa: E402


def get_config():
    config = tsn_synthetic.get_config()
    config.model.backbone.update(type='ResNetTSM', num_segments=tsn_synthetic.num_segments,
                                 shift_div=8)
    config.model.cls_head = dict(
        type='TSMHead', num_classes=8, in_channels=256, num_segments=tsn_synthetic.num_segments,
        spatial_type='avg', consensus=dict(type='AvgConsensus', dim=1), dropout_ratio=0.5,
        init_std=0.001, is_shift=True, average_clips='prob')
    config.optim_wrapper.clip_grad.max_norm = 20.0  # tsm_k400.py's
    config.optim_wrapper.paramwise_cfg.fc_lr5 = True
    return config
