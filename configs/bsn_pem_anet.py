"""BSN stage 3, PEM, 20 epochs on ActivityNet-1.3 (MMAction2's
bsn_pem_400x100_1x16_20e_activitynet_feature), and stage 2, PGM (MMAction2's
bsn_pgm_400x100_activitynet-feature: the module-level `pgm_*` settings below, read by
`python -m action_jax.tools.bsn_proposal_generation configs/bsn_pem_anet.py --mode train|test`).

Run bsn_tem_anet.py first; see its docstring for the three steps.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bmn_anet  # noqa: E402
import bsn_tem_anet  # noqa: E402

data_root = bsn_tem_anet.data_root
ann_file_train = 'data/ActivityNet/anet_anno_train.json'
ann_file_val = 'data/ActivityNet/anet_anno_val.json'
ann_file_test = 'data/ActivityNet/anet_anno_val.json'
work_dir = bsn_tem_anet.work_dir
tem_results_dir = bsn_tem_anet.tem_results_dir
pgm_proposals_dir = f'{work_dir}/pgm_proposals'
pgm_features_dir = f'{work_dir}/pgm_features'

# PGM (MMAction2's bsn_pgm config).
temporal_scale = 100
pgm_proposals_cfg = dict(pgm_proposals_thread=8, temporal_scale=temporal_scale,
                         peak_threshold=0.5)
pgm_features_test_cfg = dict(pgm_features_thread=32, top_k=1000, num_sample_start=8,
                             num_sample_end=8, num_sample_action=16, num_sample_interp=3,
                             bsp_boundary_ratio=0.2)
pgm_features_train_cfg = dict(pgm_features_test_cfg, top_k=500)

model = dict(type='PEM', pem_feat_dim=32, pem_hidden_dim=256, pem_u_ratio_m=1,
             pem_u_ratio_l=2, pem_high_temporal_iou_threshold=0.6,
             pem_low_temporal_iou_threshold=0.2, soft_nms_alpha=0.75,
             soft_nms_low_threshold=0.65, soft_nms_high_threshold=0.9, post_process_top_k=100)


def pem_pipelines(proposals_dir: str, features_dir: str):
    """(train, val/test) pipelines reading PGM's proposals and features."""
    load = dict(type='LoadProposals', pgm_proposals_dir=proposals_dir,
                pgm_features_dir=features_dir)
    train = [dict(load, top_k=500),
             dict(type='PackLocalizationInputs', keys=('reference_temporal_iou', 'bsp_feature'),
                  meta_keys=())]
    test = [dict(load, top_k=1000),
            dict(type='PackLocalizationInputs',
                 keys=('tmin', 'tmax', 'tmin_score', 'tmax_score', 'bsp_feature'),
                 meta_keys=('video_name', 'duration_second', 'duration_frame', 'annotations',
                            'feature_frame'))]
    return train, test


def pem_config(ann_files, feature_root: str, proposals_dir: str, features_dir: str,
               batch_sizes=(16, 1, 1), num_workers: int = 8):
    """The PEM recipe on the given splits (train, val, test)."""
    config = bmn_anet.get_config()
    config.model = model
    train, test = pem_pipelines(proposals_dir, features_dir)
    bmn_anet.localization_data(config, ann_files, (feature_root,) * 3, (train, test, test),
                               batch_sizes=batch_sizes, num_workers=num_workers)
    config.train_cfg.max_epochs = 20
    config.train_cfg.val_interval = 20
    config.optim_wrapper.optimizer.update(type='Adam', lr=0.01, weight_decay=0.00001)
    config.optim_wrapper.clip_grad.max_norm = 40.0
    config.param_scheduler = [
        dict(type='MultiStepLR', begin=0, end=20, by_epoch=True, milestones=[10], gamma=0.1)]
    config.eval_metrics = ('AR@AN',)
    return config


def get_config():
    return pem_config((ann_file_train, ann_file_val, ann_file_test), data_root,
                      pgm_proposals_dir, pgm_features_dir)
