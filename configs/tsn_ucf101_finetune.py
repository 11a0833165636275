"""TSN R50 finetuned on UCF101 (split 1) from a Kinetics-400 checkpoint, as MMAction2's finetuning
tutorial (docs/en/user_guides/finetune.md) does: tsn_k400.py with a 101-class head, the K400
weights as `load_from`, lr 0.005 instead of 0.01 and 50 epochs instead of 100 (lr for a global
batch of 256, scaled to yours by tsn_k400.py's auto_scale_lr).

Every tensor of the checkpoint is copied except the head's, whose shape no longer fits: it keeps
its initialisation and a warning names it (`load_from_strict`, True, still makes a name in the
model or the checkpoint but not both an error).

Data as MMAction2's UCF101 layout: data/ucf101/videos/<class>/<video>.avi and the list files
below (`path label`, labels 0-100). The K400 checkpoint is MMAction2's (model zoo) .pth, or an
action_jax workdir trained with configs/tsn_k400.py.

Your own videos: `--config=configs/tsn_ucf101_finetune.py:DIR` with DIR the `--out-dir` of
action_jax.tools.build_file_list: its lists DIR/<name>_{train,val}_list_videos.txt, as many
classes as DIR/label_map.txt has lines, videos under DIR/videos unless
`--config.<train|val|test>_dataloader.dataset.data_prefix.video=SRC` says otherwise (README,
"Train on your own videos").
"""
import glob
import os
import sys

from action_jax.label_map import read_label_map

sys.path.insert(0, os.path.dirname(__file__))
import tsn_k400  # noqa: E402

split = 1  # UCF101's official train/test splits: 1, 2 or 3
num_classes = 101
data_root = 'data/ucf101/videos'
data_root_val = 'data/ucf101/videos'
ann_file_train = f'data/ucf101/ucf101_train_split_{split}_videos.txt'
ann_file_val = f'data/ucf101/ucf101_val_split_{split}_videos.txt'
load_from = ('checkpoints/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb_'
             '20220906-cd10898e.pth')


def use_data(config, *, num_classes: int, ann_file_train: str, ann_file_val: str,
             data_root: str, data_root_val: str):
    """The new classes and list files (the test split is the val split, as MMAction2's)."""
    config.model.cls_head.num_classes = num_classes
    for loader, ann_file, root in ((config.train_dataloader, ann_file_train, data_root),
                                   (config.val_dataloader, ann_file_val, data_root_val),
                                   (config.test_dataloader, ann_file_val, data_root_val)):
        loader.dataset.update(ann_file=ann_file, data_prefix=dict(video=root))
    return config


def use_own_videos(config, lists_dir: str):
    """`use_data` for the output directory of build_file_list (see above)."""
    found = sorted(glob.glob(os.path.join(lists_dir, '*_train_list_videos.txt')))
    label_map = os.path.join(lists_dir, 'label_map.txt')
    if len(found) != 1 or not os.path.isfile(label_map):
        raise ValueError(f'{lists_dir}: expected one *_train_list_videos.txt and label_map.txt '
                         f'(python -m action_jax.tools.build_file_list SRC --out-dir '
                         f'{lists_dir}), found {[os.path.basename(f) for f in found]}')
    videos = os.path.join(lists_dir, 'videos')
    return use_data(config, num_classes=len(read_label_map(label_map)), ann_file_train=found[0],
                    ann_file_val=found[0].replace('_train_list_', '_val_list_'),
                    data_root=videos, data_root_val=videos)


def get_config(lists_dir: str = ''):
    config = tsn_k400.get_config()
    if lists_dir:
        use_own_videos(config, lists_dir)
    else:
        use_data(config, num_classes=num_classes, ann_file_train=ann_file_train,
                 ann_file_val=ann_file_val, data_root=data_root, data_root_val=data_root_val)
    config.load_from = load_from
    # Finetuning: a smaller learning rate and fewer epochs.
    config.optim_wrapper.optimizer.lr = 0.005
    config.train_cfg.update(max_epochs=50, val_interval=1)
    config.param_scheduler = [
        dict(type='MultiStepLR', begin=0, end=50, by_epoch=True, milestones=[20, 40],
             gamma=0.1)]
    return config
