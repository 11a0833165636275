"""BSN's PGM and PEM on the synthetic localization set (run bsn_tem_synthetic.py first):

    python -m action_jax.tools.bsn_proposal_generation configs/bsn_pem_synthetic.py --mode train
    python -m action_jax.tools.bsn_proposal_generation configs/bsn_pem_synthetic.py --mode test
    python -m action_jax.main --config configs/bsn_pem_synthetic.py --workdir ...
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bmn_synthetic  # noqa: E402
import bsn_pem_anet  # noqa: E402
import bsn_tem_synthetic  # noqa: E402

data_root = bmn_synthetic.data_root
ann_file_train = f'{data_root}/anet_anno_train.json'
ann_file_val = f'{data_root}/anet_anno_val.json'
work_dir = bsn_tem_synthetic.work_dir
tem_results_dir = bsn_tem_synthetic.tem_results_dir
pgm_proposals_dir = f'{work_dir}/pgm_proposals'
pgm_features_dir = f'{work_dir}/pgm_features'
pgm_proposals_cfg = dict(bsn_pem_anet.pgm_proposals_cfg,
                         temporal_scale=bmn_synthetic.temporal_dim)
pgm_features_test_cfg = bsn_pem_anet.pgm_features_test_cfg
pgm_features_train_cfg = bsn_pem_anet.pgm_features_train_cfg


def get_config():
    config = bsn_pem_anet.pem_config((ann_file_train, ann_file_val, ann_file_val),
                                     bmn_synthetic.feature_dir, pgm_proposals_dir,
                                     pgm_features_dir, batch_sizes=(16, 8, 8), num_workers=0)
    config.synthetic_data = bmn_synthetic.synthetic_data
    config.default_hooks.logger.interval = 5
    config.default_hooks.checkpoint.interval = 5
    return config
