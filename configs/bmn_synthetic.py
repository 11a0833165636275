"""BMN on the synthetic localization set: bmn_anet.py's recipe scaled down to CPU minutes.

The set (action_jax/localization/synthetic.py) is generated on first use: 256 videos of
32 steps x 16-d features with 1-3 planted actions each (192 train / 64 val). The model keeps
BMN's structure at 32 steps, 8 samples per proposal and narrower layers. The loaders read the
small csvs in the main process (num_workers=0): worker processes would take longer to start,
at every evaluation, than the reading they would save.

    python -m action_jax.main --config configs/bmn_synthetic.py --workdir work_dirs/bmn_synthetic
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bmn_anet  # noqa: E402

data_root = 'data/synthetic_localization'
temporal_dim = 32
feat_dim = 16
synthetic_data = dict(type='SyntheticLocalization', out=data_root, num_videos=256,
                      temporal_dim=temporal_dim, feat_dim=feat_dim, seed=0)
feature_dir = f'{data_root}/csv_mean_{temporal_dim}'


def get_config():
    config = bmn_anet.get_config()
    config.model = dict(bmn_anet.model, temporal_dim=temporal_dim, feat_dim=feat_dim,
                        num_samples=8, hidden_dim_1d=64, hidden_dim_2d=32, hidden_dim_3d=64)
    config.synthetic_data = synthetic_data
    bmn_anet.localization_data(
        config, tuple(f'{data_root}/anet_anno_{split}.json' for split in ('train', 'val', 'val')),
        (feature_dir,) * 3,
        (bmn_anet.train_pipeline, bmn_anet.val_pipeline, bmn_anet.test_pipeline),
        batch_sizes=(8, 8, 8), num_workers=0)
    config.train_cfg.max_epochs = 12
    config.train_cfg.val_interval = 3
    config.param_scheduler = [
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9], gamma=0.1)]
    config.default_hooks.logger.interval = 5
    config.default_hooks.checkpoint.interval = 3
    return config
