"""BMN on features extracted from your own videos (README: "Temporal localization on your
own videos"): bmn_anet.py's recipe on what `action_jax.tools.extract_features` writes.

    data/own_videos/features/<video>.csv          [T, feat_dim], any T per video
    data/own_videos/anet_anno_{train,val}.json    annotations + the fields extract_features adds

The feature sequences are resampled to `temporal_dim` steps when loaded (linear
interpolation, LoadLocalizationFeature(temporal_dim=...), as MMAction2's ActivityNet
preparation pools to 100). `feat_dim` is the backbone's channel count (256 for
configs/tsn_synthetic.py, 2048 for a ResNet-50), `feature_extraction_interval` the
extraction's --stride. The sizes fit the README's example (24 windows of 4 frames per
video); for ActivityNet-length videos use bmn_anet.py's (100 steps, 16-frame windows).

    python -m action_jax.main --config configs/bmn_own_videos.py --workdir work_dirs/bmn_own
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bmn_anet  # noqa: E402

data_root = 'data/own_videos'
feature_dir = f'{data_root}/features'
temporal_dim = 16
feat_dim = 256
stride = 4


def get_config(features: str = str(feat_dim)):
    """`configs/bmn_own_videos.py:128` takes features of 128 channels."""
    config = bmn_anet.get_config()
    config.model = dict(bmn_anet.model, temporal_dim=temporal_dim, feat_dim=int(features),
                        num_samples=8, hidden_dim_1d=64, hidden_dim_2d=32, hidden_dim_3d=64,
                        feature_extraction_interval=stride, post_process_top_k=20)
    load = dict(type='LoadLocalizationFeature', temporal_dim=temporal_dim)
    pipelines = tuple([load, *pipeline[1:]] for pipeline in
                      (bmn_anet.train_pipeline, bmn_anet.val_pipeline, bmn_anet.test_pipeline))
    bmn_anet.localization_data(
        config, tuple(f'{data_root}/anet_anno_{split}.json' for split in ('train', 'val', 'val')),
        (feature_dir,) * 3, pipelines, batch_sizes=(4, 4, 4), num_workers=0)
    config.train_cfg.max_epochs = 20
    config.train_cfg.val_interval = 5
    config.param_scheduler = [
        dict(type='MultiStepLR', begin=0, end=20, by_epoch=True, milestones=[15], gamma=0.1)]
    config.default_hooks.logger.interval = 5
    config.default_hooks.checkpoint.interval = 5
    return config
