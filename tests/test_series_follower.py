"""A live chart reads only the points it does not hold yet."""

from ddpm_tui.tui.series import SeriesFollower
from core.store import Store, queries


def test_follower_reads_only_new_points_and_rereads_after_a_truncation(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    run = queries.create_run(store, {}, status="running", name="r", total_steps=100)
    reads = []

    def reader(*args):
        reads.append(args)
        return queries.metric_series(store, *args)

    follower = SeriesFollower(reader, run.id, "train/loss", max_points=4)
    queries.insert_metrics(store, run.id, [("train/loss", s, 1.0 / s, 100.0 + s) for s in range(1, 4)])
    assert follower.update(3)[0] == [1, 2, 3]
    queries.insert_metrics(store, run.id, [("train/loss", s, 1.0 / s, 100.0 + s) for s in range(4, 7)])
    steps, values, walls = follower.update(6)
    assert steps == [1, 2, 3, 4, 5, 6] and values[-1] == 1 / 6 and walls[-1] == 106.0
    assert [r[3] for r in reads] == [None, 3]  # the second read asked only for steps after 3
    queries.insert_metrics(store, run.id, [("train/loss", s, 1.0 / s, 100.0 + s) for s in range(7, 10)])
    assert follower.update(9)[0] == [1, 3, 5, 7, 9]  # past 2 x max_points: every other point
    queries.truncate_metrics(store, run.id, 2)  # resumed from the checkpoint of step 2
    assert follower.update(2)[0] == [1, 2]
