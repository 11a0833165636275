"""I3D R50, 32x2x1 clips, 100 epochs on Kinetics-400 (MMAction2's
i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb / 0.x i3d_r50_32x2x1_100e_kinetics400_rgb)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import tsn_k400  # noqa: E402  (same data layout)

train_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=32, frame_interval=2, num_clips=1),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='MultiScaleCrop', input_size=224, scales=(1, 0.8), random_crop=False,
         max_wh_scale_gap=0),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=32, frame_interval=2, num_clips=1, test_mode=True),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len=32, frame_interval=2, num_clips=10, test_mode=True),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='ThreeCrop', crop_size=256),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]


def get_config():
    config = tsn_k400.get_config()
    config.model = dict(
        type='Recognizer3D',
        backbone=dict(type='ResNet3d', pretrained2d=True,
                      pretrained=None,  # a local torchvision resnet50 file, inflated to 3D
                      depth=50, conv1_kernel=(5, 7, 7), conv1_stride_t=2, pool1_stride_t=2,
                      conv_cfg=dict(type='Conv3d'), norm_eval=False,
                      inflate=((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)),
                      zero_init_residual=False),
        cls_head=dict(type='I3DHead', num_classes=400, in_channels=2048, spatial_type='avg',
                      dropout_ratio=0.5, init_std=0.01, average_clips='prob'),
        data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], format_shape='NCTHW'),
        # 10 clips x 3 crops per video: 3 views at a time through the backbone.
        test_cfg=dict(max_testing_views=3))
    for loader, pipeline, batch in ((config.train_dataloader, train_pipeline, 8),
                                    (config.val_dataloader, val_pipeline, 8),
                                    (config.test_dataloader, test_pipeline, 1)):
        loader.batch_size = batch
        loader.dataset.pipeline = pipeline
    config.train_cfg.update(max_epochs=100, val_interval=5)
    config.param_scheduler = [
        dict(type='MultiStepLR', begin=0, end=100, by_epoch=True, milestones=[40, 80],
             gamma=0.1)]
    config.optim_wrapper.optimizer.update(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
    config.optim_wrapper.clip_grad.max_norm = 40.0
    config.auto_scale_lr.base_batch_size = 64  # 8 GPUs x 8
    return config
