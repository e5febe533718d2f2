"""The benchmarks a suite runs (`suite.benchmark`): for each, the dataset kind its runs read, its
tasks with their class counts and groups, the names the repositories and archives give them, the
keys that point a run at one task under the search or the final protocol, how its final runs are
tested, and the published figures its table shows beside ours. A new benchmark is one entry here
(plus its dataset kind under data/kinds/).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

from adaptformer.data.kinds import fgvc, vtab


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    dataset: str  # the data.dataset every method's config must read
    tasks: Dict[str, int]  # task -> classes, in the benchmark's order
    groups: Dict[str, str]  # task -> group
    group_order: Tuple[str, ...]
    aliases: Dict[str, str]  # another name of a task, or of its folder as distributed -> task
    own_tasks: bool  # whether {name, num_classes, group} tasks of one's own may join
    final_runs: str  # how the final runs train and test, for the report
    published_source: str = ""
    published_tasks: Dict[str, Dict[str, float]] = field(default_factory=dict)  # method -> task -> top-1 %
    published_means: Dict[str, float] = field(default_factory=dict)  # method -> mean over every task

    def task(self, name: str) -> str:
        """The canonical task name of `name` (an alias, any case), or `name` lower-cased."""
        return self.aliases.get(name.lower(), name.lower())

    def task_keys(self, task: str, folder: str, num_classes: int, own: bool, protocol: str) -> Dict:
        """The run keys that make a method's config run `task` under `protocol` (search | final)."""
        keys = {"data.data_dir": folder, "model.num_classes": num_classes,
                f"data.{self.dataset}.protocol": protocol, f"data.{self.dataset}.task": task}
        if own:
            keys[f"data.{self.dataset}.num_classes"] = num_classes
        return keys

    @property
    def keys(self) -> Tuple[str, ...]:
        """Every key task_keys may set (a user's -o may not set them)."""
        return ("data.data_dir", "model.num_classes") + tuple(
            f"data.{self.dataset}.{k}" for k in ("protocol", "task") + (("num_classes",) if self.own_tasks else ()))


VTAB = Benchmark(
    name="vtab", title="VTAB-1k", dataset="vtab", tasks=dict(vtab.TASKS),
    groups={task: group for group, tasks in vtab.GROUPS.items() for task in tasks},
    group_order=tuple(vtab.GROUPS), aliases=dict(vtab.ALIASES), own_tasks=True,
    final_runs="train800val200, the last epoch's weights, tested once",
    # V-PETL Bench (NeurIPS 2024), ViT-B/16 ImageNet-21k: AdaptFormer per task and the means over the
    # 19 tasks of the methods it reports. GPU figures, not reproduced here.
    published_source="V-PETL Bench's published ViT-B/16 ImageNet-21k figures (GPU)",
    published_tasks={"adaptformer": {
        "cifar": 70.8, "caltech101": 91.2, "dtd": 70.5, "oxford_flowers102": 99.1, "oxford_iiit_pet": 90.9,
        "svhn": 86.6, "sun397": 54.8, "patch_camelyon": 83.0, "eurosat": 95.8, "resisc45": 84.4,
        "diabetic_retinopathy": 76.3, "clevr_count": 81.9, "clevr_dist": 64.3, "dmlab": 49.3, "kitti": 80.3,
        "dsprites_loc": 76.3, "dsprites_ori": 45.7, "smallnorb_azi": 31.7, "smallnorb_ele": 41.1}},
    published_means={"full": 65.57, "linear": 52.94, "vpt": 69.43, "adapter": 71.44, "lora": 72.25,
                     "adaptformer": 72.32})

FGVC = Benchmark(
    name="fgvc", title="FGVC", dataset="fgvc", tasks={task: n for task, (n, _) in fgvc.TASKS.items()},
    groups={task: "fine-grained" for task in fgvc.TASKS}, group_order=("fine-grained",),
    aliases=dict(fgvc.ALIASES), own_tasks=False,
    final_runs="train.json, the epoch chosen on val.json, tested once on test.json",
    published_source="V-PETL Bench's published ViT-B/16 ImageNet-21k figures (GPU)",
    published_tasks={"adaptformer": {"cub": 88.4, "nabirds": 84.7, "oxford_flowers": 99.2, "stanford_dogs": 88.2,
                                     "stanford_cars": 81.9}},
    published_means={"full": 88.54, "linear": 79.32, "lora": 84.78, "adaptformer": 88.48})

BENCHMARKS: Dict[str, Benchmark] = {b.name: b for b in (VTAB, FGVC)}
