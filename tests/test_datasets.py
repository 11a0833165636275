"""MMAction2 list-file datasets: parsing, results dicts, errors, copy and repr."""
import os

import numpy as np
import pytest

from action_jax.data.datasets import DATASETS, RawframeDataset, VideoDataset


@pytest.fixture
def write_list(tmp_path):
    """Write a list file and return its path as a str."""
    def write(text, name='list.txt'):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def test_video_dataset(write_list):
    ann = write_list('a/x.mp4 3\n\n  b/y.mp4   0  \nz.mp4 12\n')
    ds = VideoDataset(ann)
    assert len(ds) == 3
    assert ds[1] == dict(filename='b/y.mp4', label=0, sample_idx=1, modality='RGB',
                         start_index=0)
    assert [r['label'] for r in ds.data_list] == [3, 0, 12]


@pytest.mark.parametrize('prefix', ['/data/k400', dict(video='/data/k400')])
def test_video_dataset_data_prefix(write_list, prefix):
    ds = VideoDataset(write_list('a/x.mp4 3\n'), data_prefix=prefix, modality='Flow',
                      start_index=1)
    assert ds[0]['filename'] == os.path.join('/data/k400', 'a/x.mp4')
    assert (ds[0]['modality'], ds[0]['start_index']) == ('Flow', 1)


def test_video_dataset_multi_label(write_list):
    ds = VideoDataset(write_list('x.mp4 0 3\ny.mp4 2\n'), multi_class=True, num_classes=4)
    label = ds[0]['label']
    assert label.dtype == np.float32
    np.testing.assert_array_equal(label, [1, 0, 0, 1])
    np.testing.assert_array_equal(ds[1]['label'], [0, 0, 1, 0])
    assert ds.data_list[0]['label'] == [0, 3]


def test_video_dataset_delimiter_allows_spaces_in_paths(write_list):
    ds = VideoDataset(write_list('my videos/a b.mp4,2\n'), delimiter=',')
    assert (ds[0]['filename'], ds[0]['label']) == ('my videos/a b.mp4', 2)


def test_rawframe_dataset(write_list):
    ann = write_list('rgb/v0 163 1\nrgb/v1 122 4\n')
    ds = RawframeDataset(ann, data_prefix=dict(img='/frames'))
    assert len(ds) == 2
    assert ds[1] == dict(frame_dir=os.path.join('/frames', 'rgb/v1'), offset=0,
                         total_frames=122, label=4, sample_idx=1, modality='RGB',
                         start_index=1, filename_tmpl='img_{:05}.jpg')


def test_rawframe_dataset_with_offset_and_multi_label(write_list):
    ann = write_list('v0 12 163 3\nv1 0 295 1 2 4\n')
    ds = RawframeDataset(ann, data_prefix='/frames', filename_tmpl='{:06}.jpg',
                         with_offset=True, multi_class=True, num_classes=5)
    first, second = ds[0], ds[1]
    assert (first['frame_dir'], first['offset'], first['total_frames']) == (
        os.path.join('/frames', 'v0'), 12, 163)
    assert (second['offset'], second['total_frames']) == (0, 295)
    np.testing.assert_array_equal(first['label'], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(second['label'], [0, 1, 1, 0, 1])
    assert first['filename_tmpl'] == '{:06}.jpg'


def test_test_mode_accepts_unlabelled_lines(write_list):
    assert VideoDataset(write_list('x.mp4\n'), test_mode=True)[0]['label'] == -1
    assert RawframeDataset(write_list('v 10\n'), test_mode=True)[0]['label'] == -1
    ds = VideoDataset(write_list('x.mp4\n'), test_mode=True, multi_class=True, num_classes=3)
    np.testing.assert_array_equal(ds[0]['label'], [0, 0, 0])


BAD_LINES = [
    # (dataset, kwargs, bad line, message fragment)
    (VideoDataset, {}, 'x.mp4', 'missing label'),
    (VideoDataset, {}, 'x.mp4 two', "label 'two' is not an integer"),
    (VideoDataset, {}, 'x.mp4 -1', 'label -1 is negative'),
    (VideoDataset, {}, 'x.mp4 1 2', '2 labels on a single-label line'),
    (VideoDataset, dict(num_classes=5), 'x.mp4 5', 'out of range for num_classes=5'),
    (VideoDataset, dict(multi_class=True, num_classes=5), 'x.mp4', 'missing label'),
    (VideoDataset, dict(multi_class=True, num_classes=5), 'x.mp4 1 9', 'label 9 is out of range'),
    (RawframeDataset, {}, 'v', 'missing total_frames'),
    (RawframeDataset, {}, 'v 10', 'missing label'),
    (RawframeDataset, {}, 'v 1.5 3', "total_frames '1.5' is not an integer"),
    (RawframeDataset, {}, 'v -3 1', 'total_frames -3 is negative'),
    (RawframeDataset, {}, 'v 10 x', "label 'x' is not an integer"),
    (RawframeDataset, dict(num_classes=3), 'v 10 3', 'out of range for num_classes=3'),
    (RawframeDataset, dict(with_offset=True), 'v 10', 'missing total_frames'),
    (RawframeDataset, dict(with_offset=True), 'v -1 10 2', 'offset -1 is negative'),
    (RawframeDataset, dict(with_offset=True), 'v 0 10', 'missing label'),
]


@pytest.mark.parametrize('cls, kwargs, bad, message', BAD_LINES)
def test_bad_line_names_file_and_line(write_list, cls, kwargs, bad, message):
    good = 'ok.mp4 0' if cls is VideoDataset else ('ok 0 8 0' if kwargs.get('with_offset')
                                                    else 'ok 8 0')
    ann = write_list(f'{good}\n\n{good}\n  {bad}  \n{good}\n')
    with pytest.raises(ValueError) as info:
        cls(ann, **kwargs)
    text = str(info.value)
    assert f'{ann}, line 4:' in text
    assert message in text
    assert repr(bad) in text


def test_missing_ann_file(tmp_path):
    missing = str(tmp_path / 'nope.txt')
    for cls in DATASETS.values():
        with pytest.raises(FileNotFoundError, match='nope.txt'):
            cls(missing)


def test_bad_arguments(write_list):
    ann = write_list('x.mp4 0\n')
    with pytest.raises(ValueError, match='needs num_classes'):
        VideoDataset(ann, multi_class=True)
    with pytest.raises(ValueError, match="key 'video'"):
        VideoDataset(ann, data_prefix=dict(img='/x'))
    with pytest.raises(ValueError, match='num_classes must be positive'):
        RawframeDataset(ann, num_classes=0)


def test_getitem_returns_fresh_copies(write_list):
    ds = VideoDataset(write_list('x.mp4 0 2\ny.mp4 1\n'), multi_class=True, num_classes=3)
    first = ds[0]
    first['label'][:] = 7
    first['filename'] = 'changed'
    first['imgs'] = []
    again = ds[0]
    assert again['filename'] == 'x.mp4' and 'imgs' not in again
    np.testing.assert_array_equal(again['label'], [1, 0, 1])
    assert ds.data_list[0] == dict(filename='x.mp4', label=[0, 2])


def test_indexing(write_list):
    ds = RawframeDataset(write_list('a 5 0\nb 6 1\nc 7 2\n'))
    assert ds[-1]['frame_dir'] == 'c' and ds[-1]['sample_idx'] == 2
    assert ds[np.int64(1)]['total_frames'] == 6
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(TypeError):
        ds[1.0]


def test_repr_is_stable(write_list):
    ann = write_list('x.mp4 0\ny.mp4 1\n')
    expected = f'VideoDataset(ann_file={ann!r}, num_samples=2)'
    assert repr(VideoDataset(ann)) == repr(VideoDataset(ann, test_mode=True)) == expected
    assert repr(RawframeDataset(write_list('a 5 0\n', 'raw.txt'))).startswith(
        'RawframeDataset(ann_file=')
    assert DATASETS == {'VideoDataset': VideoDataset, 'RawframeDataset': RawframeDataset}
