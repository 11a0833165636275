"""TSN on the embedded synthetic data set: the README's main job, minutes on a 2-core CPU.

Same recipe as tsn_k400.py (SGD 0.01, momentum 0.9, weight decay 1e-4, clip 40, MultiStepLR),
scaled down: ResNet-18 with its first 3 stages at 48 px, 8 segments (as TSM's synthetic config,
so that the comparison isolates temporal modelling), batch 16, 12 epochs of 22 steps, plus a
1-epoch linear warm-up (from scratch, no ImageNet weights). The data set (480 videos of 64x64,
action_jax/data/synthetic.py) is generated on first use: half of what separates its classes is
the direction of motion, which TSN's order-free average over frames cannot see, so TSN learns
the shape (test top-1 about 0.25-0.3, shape ~100%) and TSM, same data and budget, the direction.

Why 3 stages at 48 px: XLA's CPU convolutions are 10-100x slower per FLOP on 2x2 and 1x1
feature maps (a 3x3 conv on [128, 2, 2, 512] takes seconds), which is what layer4 gets at 32-64 px
and layer3 at 32 px; at 48 px the smallest map is layer3's 3x3. Validation after epochs 3-9 runs
at a high learning rate, where BatchNorm's running averages lag the fast-moving weights; the
numbers that count are those after the learning-rate steps (epochs 9-12).
"""
from action_jax.config import default_config

data_root = 'data/synthetic'
num_segments = 8
input_size = 48


def synthetic_pipelines(clip_len: int = 1, num_clips: int = num_segments,
                        input_format: str = 'NCHW', frame_interval: int = 1,
                        input_size: int = input_size):
    """Train/val/test pipelines shared by the synthetic configs (TSN, TSM, I3D)."""
    sample = dict(type='SampleFrames', clip_len=clip_len, frame_interval=frame_interval,
                  num_clips=num_clips)
    train = [
        dict(type='DecordInit'),
        sample,
        dict(type='DecordDecode'),
        dict(type='Resize', scale=(-1, input_size)),
        dict(type='MultiScaleCrop', input_size=input_size, scales=(1, 0.875, 0.75),
             random_crop=False, max_wh_scale_gap=1),
        dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
        # No Flip: a horizontal flip turns "moving left" into "moving right".
        dict(type='FormatShape', input_format=input_format),
        dict(type='PackActionInputs'),
    ]
    test = [
        dict(type='DecordInit'),
        dict(sample, test_mode=True),
        dict(type='DecordDecode'),
        dict(type='Resize', scale=(-1, input_size)),
        dict(type='CenterCrop', crop_size=input_size),
        dict(type='FormatShape', input_format=input_format),
        dict(type='PackActionInputs'),
    ]
    return train, test


def synthetic_data(config, train_pipeline, test_pipeline, batch_size: int = 16) -> None:
    """Points the three data loaders at the synthetic set."""
    config.synthetic_data = dict(out=data_root, seed=0)
    for loader, split, pipeline in ((config.train_dataloader, 'train', train_pipeline),
                                    (config.val_dataloader, 'val', test_pipeline),
                                    (config.test_dataloader, 'val', test_pipeline)):
        loader.batch_size = batch_size
        loader.num_workers = 2
        loader.dataset = dict(
            type='VideoDataset', ann_file=f'{data_root}/synthetic_{split}_list_videos.txt',
            data_prefix=dict(video=f'{data_root}/videos_{split}'), pipeline=pipeline,
            test_mode=split != 'train')


def get_config():
    config = default_config()
    config.model = dict(
        type='Recognizer2D',
        backbone=dict(type='ResNet', depth=18, num_stages=3, out_indices=(2,), strides=(1, 2, 2),
                      dilations=(1, 1, 1), norm_eval=False),
        cls_head=dict(type='TSNHead', num_classes=8, in_channels=256, spatial_type='avg',
                      consensus=dict(type='AvgConsensus', dim=1), dropout_ratio=0.4,
                      init_std=0.01, average_clips='prob'),
        data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], format_shape='NCHW'))
    synthetic_data(config, *synthetic_pipelines())

    config.train_cfg.max_epochs = 12
    config.train_cfg.val_interval = 3
    config.optim_wrapper.optimizer.update(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
    config.optim_wrapper.clip_grad.max_norm = 40.0
    config.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
             convert_to_iter_based=True),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)]
    config.default_hooks.logger.interval = 5
    config.default_hooks.checkpoint.interval = 3
    return config
