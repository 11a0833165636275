"""tsm_synthetic.py made tiny as tsn_tiny.py makes TSN (2 stages, 32 px), with 8 segments.

`--config=tests/configs/tsm_tiny.py:DATA_DIR`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'configs'))
import tsm_synthetic  # noqa: E402
import tsn_tiny  # noqa: E402


def get_config(data_dir: str = 'data/synthetic_tiny'):
    config = tsn_tiny.shrink(tsm_synthetic.get_config(), data_dir, num_clips=8)
    config.model.backbone.num_segments = config.model.cls_head.num_segments = 8
    return config
