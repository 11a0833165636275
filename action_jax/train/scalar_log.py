"""Training scalars to TensorBoard event files, `scalars.jsonl` and the console log.

clu's metric_writers would do the TensorBoard part, but clu 0.0.12 imports TensorFlow when the
package is imported; tensorboard's own event writer needs no TensorFlow.
"""
import json
import os
import time
from typing import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class ScalarLog:
    """Only the main process writes; the others keep the interface and write nothing."""

    def __init__(self, workdir: str, is_main: bool = True):
        self.events = EventFileWriter(workdir) if is_main else None
        self.jsonl = os.path.join(workdir, 'scalars.jsonl') if is_main else None

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if self.events is None or not scalars:  # e.g. TEM's evaluation: results, no metric
            return
        values = {k: float(v) for k, v in scalars.items()}
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                             for k, v in values.items()])
        self.events.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                              summary=summary))
        with open(self.jsonl, 'a') as f:
            f.write(json.dumps({'step': step, **values}) + '\n')

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
