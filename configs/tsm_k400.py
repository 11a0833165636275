"""TSM R50, 1x1x8 segments, 50 epochs on Kinetics-400 (MMAction2's
tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb / 0.x tsm_r50_1x1x8_50e_kinetics400_rgb)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import tsn_k400  # noqa: E402  (same data layout)

train_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='MultiScaleCrop', input_size=224, scales=(1, 0.875, 0.75, 0.66),
         random_crop=False, max_wh_scale_gap=1, num_fixed_crops=13),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8, test_mode=True),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8, test_mode=True),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='TenCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]


def get_config():
    config = tsn_k400.get_config()
    config.model = dict(
        type='Recognizer2D',
        backbone=dict(type='ResNetTSM', pretrained=None,  # a local torchvision resnet50 file
                      depth=50, norm_eval=False, shift_div=8),
        cls_head=dict(type='TSMHead', num_segments=8, num_classes=400, in_channels=2048,
                      spatial_type='avg', consensus=dict(type='AvgConsensus', dim=1),
                      dropout_ratio=0.5, init_std=0.001, is_shift=True, average_clips='prob'),
        data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], format_shape='NCHW'),
        # 10 crops x 8 segments per video: run the backbone 2 views (16 frames) at a time.
        test_cfg=dict(max_testing_views=16))
    for loader, pipeline, batch in ((config.train_dataloader, train_pipeline, 16),
                                    (config.val_dataloader, val_pipeline, 16),
                                    (config.test_dataloader, test_pipeline, 1)):
        loader.batch_size = batch
        loader.dataset.pipeline = pipeline
    config.train_cfg.update(max_epochs=50, val_interval=1)
    config.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=5),
        dict(type='MultiStepLR', begin=0, end=50, by_epoch=True, milestones=[25, 45],
             gamma=0.1)]
    config.optim_wrapper.optimizer.update(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4)
    config.optim_wrapper.clip_grad.max_norm = 20.0
    config.optim_wrapper.paramwise_cfg.fc_lr5 = True  # MMAction2's TSMOptimWrapperConstructor
    config.auto_scale_lr.base_batch_size = 128  # 8 GPUs x 16
    return config
