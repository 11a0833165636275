"""A reference fixture's model (tests/fixtures/NAME_model_cfg.json) with a 64-pixel test
pipeline that gives the fixture's input shape: `--config=tests/configs/fixture_recognizer.py:NAME`
with NAME tsn_r18s (3 segments), tsm_r50s (4 segments) or i3d_r50s (one 8-frame clip).
The matching checkpoint is tests/fixtures/NAME.pth (10 classes, random weights).
"""
import json
import pathlib

from action_jax.config import default_config

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / 'fixtures'
SIZE = 64
# name -> (clip_len, num_clips, FormatShape input_format)
SAMPLING = {'tsn_r18s': (1, 3, 'NCHW'), 'tsm_r50s': (1, 4, 'NCHW'), 'i3d_r50s': (8, 1, 'NCTHW')}


def get_config(name: str = 'tsn_r18s'):
    clip_len, num_clips, input_format = SAMPLING[name]
    config = default_config()
    config.model = json.loads((FIXTURES / f'{name}_model_cfg.json').read_text())['model']
    config.test_dataloader.dataset = dict(
        type='VideoDataset', ann_file='unused.txt', test_mode=True, pipeline=[
            dict(type='DecordInit'),
            dict(type='SampleFrames', clip_len=clip_len, frame_interval=1, num_clips=num_clips,
                 test_mode=True),
            dict(type='DecordDecode'),
            dict(type='Resize', scale=(-1, SIZE)),
            dict(type='CenterCrop', crop_size=SIZE),
            dict(type='FormatShape', input_format=input_format),
            dict(type='PackActionInputs'),
        ])
    return config
