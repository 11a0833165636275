"""A tiny TSN for the training tests: ResNet-18 with 2 stages, 32 px, 4 segments.

`--config=tests/configs/tsn_tiny.py:DATA_DIR` points it at a synthetic set made by the tests.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'configs'))
import tsn_synthetic  # noqa: E402


def shrink(config, data_dir: str, num_clips: int = 4):
    """Makes a synthetic config tiny: 2 stages, 32 px, `num_clips` segments, batch 4, 3 epochs,
    data from `data_dir`, no generation."""
    config.model.backbone.update(num_stages=2, out_indices=(1,), strides=(1, 2),
                                 dilations=(1, 1))
    config.model.cls_head.in_channels = 128
    train, test = tsn_synthetic.synthetic_pipelines(num_clips=num_clips, input_size=32)
    for loader, split, pipeline in ((config.train_dataloader, 'train', train),
                                    (config.val_dataloader, 'val', test),
                                    (config.test_dataloader, 'val', test)):
        loader.batch_size = 4
        loader.num_workers = 0
        loader.dataset.update(
            ann_file=f'{data_dir}/synthetic_{split}_list_videos.txt',
            data_prefix=dict(video=f'{data_dir}/videos_{split}'), pipeline=pipeline)
    config.synthetic_data = {}
    config.optim_wrapper.optimizer.lr = 0.02
    config.train_cfg.max_epochs = 3
    config.train_cfg.val_interval = 1
    config.param_scheduler = [dict(type='MultiStepLR', begin=0, end=3, by_epoch=True,
                                   milestones=[2], gamma=0.1)]
    config.default_hooks.logger.interval = 1
    config.default_hooks.checkpoint.update(interval=1, async_save=False)
    return config


def get_config(data_dir: str = 'data/synthetic_tiny'):
    return shrink(tsn_synthetic.get_config(), data_dir)
