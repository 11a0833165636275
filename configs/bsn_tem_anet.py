"""BSN stage 1, TEM: 400-d features x 100 steps, 20 epochs on ActivityNet-1.3 (MMAction2's
bsn_tem_1xb16-400x100-20e_activitynet-feature).

BSN runs in three steps that share `work_dir`:
  1. this config: train TEM, then test it on every video (anet_anno_full.json); testing
     writes one TEM result csv per video to `tem_results_dir` (MMAction2's ANetMetric with
     metric_type='TEM' and dump_config out=tem_results_dir: no metric, only the files).
  2. PGM: `python -m action_jax.tools.bsn_proposal_generation configs/bsn_pem_anet.py
     --mode train` and `--mode test` turn them into proposals and BSP features.
  3. bsn_pem_anet.py: train and test PEM on those, scored by AR@AN.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bmn_anet  # noqa: E402

data_root = 'data/ActivityNet/activitynet_feature_cuhk/csv_mean_100/'
data_root_val = 'data/ActivityNet/activitynet_feature_cuhk/csv_mean_100/'
ann_file_train = 'data/ActivityNet/anet_anno_train.json'
ann_file_val = 'data/ActivityNet/anet_anno_val.json'
ann_file_test = 'data/ActivityNet/anet_anno_full.json'
work_dir = 'work_dirs/bsn_400x100_20e_1x16_activitynet_feature'
tem_results_dir = f'{work_dir}/tem_results'

model = dict(type='TEM', temporal_dim=100, boundary_ratio=0.1, tem_feat_dim=400,
             tem_hidden_dim=512, tem_match_threshold=0.5)

train_pipeline = [
    dict(type='LoadLocalizationFeature'),
    dict(type='GenerateLocalizationLabels'),
    dict(type='PackLocalizationInputs', keys=('gt_bbox',), meta_keys=('video_name',)),
]
val_pipeline = train_pipeline
test_pipeline = [
    dict(type='LoadLocalizationFeature'),
    dict(type='PackLocalizationInputs', meta_keys=('video_name',)),
]


def tem_config(ann_files, data_roots, results_dir: str, batch_sizes=(16, 16, 1),
               num_workers: int = 8):
    """The TEM recipe on the given splits (train, val, test); TEM results go to results_dir."""
    config = bmn_anet.get_config()
    config.model = model
    bmn_anet.localization_data(config, ann_files, data_roots,
                               (train_pipeline, val_pipeline, test_pipeline),
                               batch_sizes=batch_sizes, num_workers=num_workers)
    config.train_cfg.max_epochs = 20
    config.train_cfg.val_interval = 20
    config.optim_wrapper.optimizer.update(type='Adam', lr=0.001, weight_decay=0.0001)
    config.optim_wrapper.clip_grad.max_norm = 40.0
    config.param_scheduler = [
        dict(type='MultiStepLR', begin=0, end=20, by_epoch=True, milestones=[7, 14],
             gamma=0.1)]
    config.eval_metrics = ('TEM',)  # ANetMetric(metric_type='TEM'): dump only
    config.out = results_dir
    return config


def get_config():
    return tem_config((ann_file_train, ann_file_val, ann_file_test),
                      (data_root, data_root_val, data_root_val), tem_results_dir)
