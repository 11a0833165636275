"""BMN, 400-d features x 100 steps, 9 epochs on ActivityNet-1.3 (MMAction2's
bmn_2xb8-400x100-9e_activitynet-feature / 0.x bmn_400x100_2x8_9e_activitynet_feature).

Data layout as MMAction2's: data/ActivityNet/activitynet_feature_cuhk/csv_mean_100/<video>.csv
(the CUHK features pooled to 100 steps) and the annotation files anet_anno_{train,val}.json.
Validation and test score AR@AN (auc, AR@1/5/10/100) on the proposals, one video at a time.
"""
from action_jax.config import default_config

data_root = 'data/ActivityNet/activitynet_feature_cuhk/csv_mean_100/'
data_root_val = 'data/ActivityNet/activitynet_feature_cuhk/csv_mean_100/'
ann_file_train = 'data/ActivityNet/anet_anno_train.json'
ann_file_val = 'data/ActivityNet/anet_anno_val.json'
ann_file_test = 'data/ActivityNet/anet_anno_val.json'

model = dict(
    type='BMN',
    temporal_dim=100,
    boundary_ratio=0.5,
    num_samples=32,
    num_samples_per_bin=3,
    feat_dim=400,
    soft_nms_alpha=0.4,
    soft_nms_low_threshold=0.5,
    soft_nms_high_threshold=0.9,
    post_process_top_k=100)

train_pipeline = [
    dict(type='LoadLocalizationFeature'),
    dict(type='GenerateLocalizationLabels'),
    dict(type='PackLocalizationInputs', keys=('gt_bbox',), meta_keys=('video_name',)),
]
val_pipeline = [
    dict(type='LoadLocalizationFeature'),
    dict(type='GenerateLocalizationLabels'),
    dict(type='PackLocalizationInputs', keys=('gt_bbox',),
         meta_keys=('video_name', 'duration_second', 'duration_frame', 'annotations',
                    'feature_frame')),
]
test_pipeline = [
    dict(type='LoadLocalizationFeature'),
    dict(type='PackLocalizationInputs', keys=('gt_bbox',),
         meta_keys=('video_name', 'duration_second', 'duration_frame', 'annotations',
                    'feature_frame')),
]


def localization_data(config, ann_files, data_roots, pipelines, batch_sizes,
                      num_workers: int = 8) -> None:
    """Points the train/val/test loaders at ActivityNetDataset entries (one per split, in
    that order); shared by the BMN and BSN configs."""
    loaders = (config.train_dataloader, config.val_dataloader, config.test_dataloader)
    for i, loader in enumerate(loaders):
        loader.batch_size = batch_sizes[i]
        loader.num_workers = num_workers
        loader.dataset = dict(type='ActivityNetDataset', ann_file=ann_files[i],
                              data_prefix=dict(video=data_roots[i]), pipeline=pipelines[i],
                              test_mode=i > 0)


def get_config():
    config = default_config()
    config.model = model
    localization_data(config, (ann_file_train, ann_file_val, ann_file_test),
                      (data_root, data_root_val, data_root_val),
                      (train_pipeline, val_pipeline, test_pipeline),
                      batch_sizes=(8, 1, 1))  # per device; MMAction2: 2 GPUs x 8

    config.train_cfg.max_epochs = 9
    config.train_cfg.val_begin = 1
    config.train_cfg.val_interval = 1
    config.optim_wrapper.optimizer.update(type='Adam', lr=0.001, weight_decay=0.0001)
    config.optim_wrapper.clip_grad.max_norm = 40.0
    config.param_scheduler = [
        dict(type='MultiStepLR', begin=0, end=9, by_epoch=True, milestones=[7], gamma=0.1)]
    config.eval_metrics = ('AR@AN',)  # ANetMetric(metric_type='AR@AN')
    return config
