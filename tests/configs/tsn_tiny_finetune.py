"""configs/tsn_ucf101_finetune.py's own-videos mode on tsn_tiny.py's model.

`--config=tests/configs/tsn_tiny_finetune.py:LISTS_DIR` (build_file_list's --out-dir).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'configs'))
import tsn_synthetic  # noqa: E402
import tsn_tiny  # noqa: E402
import tsn_ucf101_finetune  # noqa: E402


def get_config(lists_dir: str):
    config = tsn_tiny.shrink(tsn_synthetic.get_config(), lists_dir)
    return tsn_ucf101_finetune.use_own_videos(config, lists_dir)
