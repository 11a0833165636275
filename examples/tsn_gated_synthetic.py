"""configs/tsn_synthetic.py with the components of examples/custom_model.py: a gated ResNet
backbone, a max-consensus head, grey clips, and the first 64 training videos.

    python -m action_jax.main --config examples/tsn_gated_synthetic.py --workdir work_dirs/gated
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'configs'))
import tsn_synthetic  # noqa: E402


def use_custom_components(config):
    """Switches a TSN config to the custom components, by their registered names."""
    # custom_model is imported (and registers its components) before anything is built.
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    config.custom_imports = dict(imports=['custom_model'], allow_failed_imports=False)
    config.model.backbone.type = 'ResNetGated'
    config.model.backbone.gate_init = 1.0
    config.model.cls_head.type = 'TSNMaxHead'
    config.train_dataloader.dataset.type = 'FirstVideosDataset'
    config.train_dataloader.dataset.max_videos = 64
    for loader in (config.train_dataloader, config.val_dataloader, config.test_dataloader):
        pipeline = list(loader.dataset.pipeline)
        pipeline.insert(len(pipeline) - 1, dict(type='ToGray'))  # before PackActionInputs
        loader.dataset.pipeline = pipeline
    return config


def get_config():
    return use_custom_components(tsn_synthetic.get_config())
