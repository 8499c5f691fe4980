"""Each clicked task's pre-processed image and keypoints, kept for the tasks clicked last."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ihp_rt.serving.label_studio.keypoints import Keypoint
from ihp_rt.session import Session


@dataclass
class TaskEntry:
    """A task's pre-processed image (in ``session``) and its keypoints, grouped by label."""

    session: Session
    groups: dict[str, list[Keypoint]] = field(default_factory=dict)


class TaskSessions:
    """One entry per Label Studio task, least recently used evicted beyond ``capacity``.

    Kept apart from the server's own session store: tasks are a cache (a task whose entry was
    evicted is fetched again, its keypoints rebuilt from the requests that follow), while the
    web page's sessions are someone's work and are never evicted to make room. Each entry's
    lock serialises its task's requests and makes concurrent first clicks on a task fetch its
    image once.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[threading.Lock, list[TaskEntry]]] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str, create: Callable[[], Session]) -> Iterator[TaskEntry]:
        """The task's entry, under its lock; ``create`` runs (under that lock) on a first click.
        If it fails the entry goes again: left empty, it would count against the capacity and
        evict a task someone is annotating, for a task that has nothing to keep."""
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (threading.Lock(), [])
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(key)
            held = self._entries[key]
        lock, slot = held
        with lock:
            if not slot:
                try:
                    slot.append(TaskEntry(create()))
                except BaseException:
                    with self._lock:  # the one place both locks are held (in this order): no deadlock
                        if self._entries.get(key) is held and not slot:
                            del self._entries[key]
                    raise
            yield slot[0]

    def forget_keypoints(self, key: str) -> None:
        """Drop a held task's keypoints, keeping its image; a task not held has none to drop."""
        with self._lock:
            held = self._entries.get(key)
        if held is not None:
            lock, slot = held
            with lock:
                for entry in slot:
                    entry.groups.clear()


def task_key(project: object, task: dict, image_url: object) -> str:
    """Which cached session a task's clicks go to: its project, id *and* image URL. A task
    without an id (or whose image was replaced) must not get another image's session, and
    with it that image's masks."""
    return f"{project}/{task.get('id')}/{hashlib.sha256(str(image_url).encode()).hexdigest()}"
