"""TSN R50, 1x1x3 segments, 100 epochs on Kinetics-400 (MMAction2's
tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb / 0.x tsn_r50_1x1x3_100e_kinetics400_rgb).

Data layout as MMAction2's: data/kinetics400/{videos_train,videos_val} and the list files
kinetics400_{train,val}_list_videos.txt (`path label` per line).
"""
from action_jax.config import default_config

data_root = 'data/kinetics400/videos_train'
data_root_val = 'data/kinetics400/videos_val'
ann_file_train = 'data/kinetics400/kinetics400_train_list_videos.txt'
ann_file_val = 'data/kinetics400/kinetics400_val_list_videos.txt'
ann_file_test = 'data/kinetics400/kinetics400_val_list_videos.txt'

# MMAction2 decodes with DecordInit/DecordDecode; PyAVInit/PyAVDecode give the same frames
# faster here (data/readers.py: one forward pass, unneeded non-reference frames skipped).
train_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='MultiScaleCrop', input_size=224, scales=(1, 0.875, 0.75, 0.66),
         random_crop=False, max_wh_scale_gap=1),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3, test_mode=True),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=25, test_mode=True),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='TenCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]


def get_config():
    config = default_config()
    config.model = dict(
        type='Recognizer2D',
        backbone=dict(
            type='ResNet',
            # MMAction2 starts from 'torchvision://resnet50'; nothing is downloaded here: point
            # this at a local torchvision checkpoint (resnet50-*.pth) to do the same.
            pretrained=None,
            depth=50,
            norm_eval=False),
        cls_head=dict(
            type='TSNHead',
            num_classes=400,
            in_channels=2048,
            spatial_type='avg',
            consensus=dict(type='AvgConsensus', dim=1),
            dropout_ratio=0.4,
            init_std=0.01,
            average_clips='prob'),
        data_preprocessor=dict(
            type='ActionDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            format_shape='NCHW'),
        # 25 clips x 10 crops = 250 frames per video: run the backbone 10 views at a time.
        test_cfg=dict(max_testing_views=10))

    config.train_dataloader.batch_size = 32  # per device; MMAction2: 8 GPUs x 32
    config.train_dataloader.num_workers = 8  # per device (MMAction2's workers_per_gpu)
    config.train_dataloader.dataset = dict(
        type='VideoDataset', ann_file=ann_file_train, data_prefix=dict(video=data_root),
        pipeline=train_pipeline)
    config.val_dataloader.batch_size = 32
    config.val_dataloader.num_workers = 8
    config.val_dataloader.dataset = dict(
        type='VideoDataset', ann_file=ann_file_val, data_prefix=dict(video=data_root_val),
        pipeline=val_pipeline, test_mode=True)
    config.test_dataloader.batch_size = 1
    config.test_dataloader.num_workers = 8
    config.test_dataloader.dataset = dict(
        type='VideoDataset', ann_file=ann_file_test, data_prefix=dict(video=data_root_val),
        pipeline=test_pipeline, test_mode=True)

    config.train_cfg.max_epochs = 100
    config.train_cfg.val_interval = 5
    config.optim_wrapper.optimizer.update(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
    config.optim_wrapper.clip_grad.max_norm = 40.0
    config.param_scheduler = [
        dict(type='MultiStepLR', begin=0, end=100, by_epoch=True, milestones=[40, 80],
             gamma=0.1)]
    # The linear scaling rule: lr 0.01 is for a global batch of 8 x 32 = 256.
    config.auto_scale_lr.enable = True
    config.auto_scale_lr.base_batch_size = 256
    config.default_hooks.checkpoint.interval = 3
    return config
