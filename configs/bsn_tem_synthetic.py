"""BSN's TEM on the synthetic localization set (see bmn_synthetic.py and bsn_tem_anet.py).

Testing writes TEM results for every video (anet_anno_full.json) to `tem_results_dir`; then
run PGM with configs/bsn_pem_synthetic.py and train PEM with it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bmn_synthetic  # noqa: E402
import bsn_tem_anet  # noqa: E402

data_root = bmn_synthetic.data_root
work_dir = 'work_dirs/bsn_synthetic'
tem_results_dir = f'{work_dir}/tem_results'


def get_config():
    config = bsn_tem_anet.tem_config(
        tuple(f'{data_root}/anet_anno_{split}.json' for split in ('train', 'val', 'full')),
        (bmn_synthetic.feature_dir,) * 3, tem_results_dir, batch_sizes=(16, 16, 16),
        num_workers=0)
    config.model = dict(bsn_tem_anet.model, temporal_dim=bmn_synthetic.temporal_dim,
                        tem_feat_dim=bmn_synthetic.feat_dim, tem_hidden_dim=64)
    config.synthetic_data = bmn_synthetic.synthetic_data
    config.default_hooks.logger.interval = 5
    config.default_hooks.checkpoint.interval = 5
    return config
