"""The README's make-reproduce cost comes from the records trained wholly on a 2-core CPU."""
from sparsevd.report.sentences import REPRODUCE_ROWS, cpu_wall_times, wall_time_block

from conftest import made_up_timing


def record(wall, device="cpu", cores=2, epoch=200, epochs=200, segments=1):
    seg = {"device": device, "cpu_count": cores, "device_name": "AMD EPYC"}
    return {"wall_time": wall, "metrics": {"epoch": epoch}, "config": {"trainer": {"epochs": epochs}},
            "segments": [seg] * segments}


def test_only_whole_cpu_runs_count():
    records = {"lenet5_ard": [record(100.0), record(50.0, device="cuda:0"), record(70.0, cores=16),
                              record(30.0, epoch=2)]}
    assert cpu_wall_times(records, "lenet5_ard") == [100.0]


def test_the_block_sums_the_row_medians_and_claims_no_total_with_a_row_missing():
    records = {row: [record(600.0), record(1200.0), record(6000.0)] for row in REPRODUCE_ROWS}
    text = wall_time_block(records)  # median 1200 s = 20 min per row, six rows: 2.0 h, three seeds 6.0 h
    assert "about **2.0 h** for one seed" in text and "**6.0 h** for three" in text and "lenet5_ard 20 min" in text
    assert text.startswith("On a 2-core CPU (AMD EPYC) ")
    del records["lenet5_dense"]
    text = wall_time_block(records)
    assert "no CPU record of lenet5_dense" in text and " h**" not in text


def test_the_random_label_sentence_reads_the_records():
    from sparsevd.report.sentences import random_label_sentence
    final = {"seed": 0, "config": {"data": {"labels": "random"}},
             "metrics": {"epoch": 200, "train_error": 88.5, "test_error": 90.2, "nonzero": {"fc1": 0, "fc2": 3},
                         "weights": {"fc1": 10, "fc2": 20}}}
    text = random_label_sentence({"x_random_labels": [final], "x": [{**final, "config": {"data": {}}}]})
    assert text == ("Trained on random labels (chance: 90 %): `x_random_labels` seed 0 ends (epoch 200) with training "
                    "error 88.50 % on its random labels and 90.20 % test error, and kept 3 of 30 weights (fc1 with none: "
                    "no path from input to output, a constant prediction).\n")
    assert random_label_sentence({}) == "No random-label record yet.\n"


def test_with_a_timing_file_the_block_states_both_ways_their_ratio_and_the_default_estimates():
    records = {row: [record(1200.0)] for row in REPRODUCE_ROWS}
    text = wall_time_block(records, made_up_timing())
    assert text.startswith("On a 2-core CPU (Test CPU, commit abcdef0), `make reproduce EPOCHS=3`")
    assert "**10.0 min** one run at a time on 2 threads (`LAUNCHER=basic THREADS=2`)" in text
    assert "**6.7 min** by default (2 runs at once, 1 thread each): **1.50×** as fast" in text
    # 12 s per epoch x 200 epochs = 40 min per run; six runs two at a time: 2.0 h; eighteen: 6.0 h
    assert "200 epochs of every row take about **2.0 h** for one seed" in text and "**6.0 h** for three" in text
    assert "on these 2 cores" in text and "lenet5_ard 40 min per run" in text
    assert "results/reproduce_timing.json" in text and text.endswith("not a result.\n")
    assert wall_time_block(records) != text  # without the file, the records' block as before


def test_the_estimate_hands_runs_out_in_the_sweeps_order():
    from sparsevd.report.sentences import full_length_estimate, makespan

    assert makespan([3, 1, 1, 1], 2) == 3 and makespan([1, 1, 1, 3], 2) == 4 and makespan([2, 2], 1) == 4
    way = made_up_timing()["ways"]["default"]
    way["runs"]["lenet300_dense"]["s_per_epoch"] = 36.0  # one run as long as three others
    # first the 7200 s run beside three 2400 s ones, then the fifth 2400 s run: 9600 s; the other way round, the
    # long run starts last, beside nothing: 4800 + 7200 s
    assert full_length_estimate(way, 1, list(REPRODUCE_ROWS)) == 9600.0
    assert full_length_estimate(way, 1, list(REPRODUCE_ROWS)[::-1]) == 12000.0


def test_a_timing_file_is_read_checked_or_absent(tmp_path):
    import json

    import pytest
    from sparsevd.io import RecordError
    from sparsevd.report.sentences import load_timing

    path = tmp_path / "reproduce_timing.json"
    assert load_timing(path) is None
    path.write_text(json.dumps(made_up_timing()))
    assert load_timing(path) == made_up_timing()
    broken = made_up_timing()
    broken["ways"]["default"]["runs"]["lenet5_ard"]["s_per_epoch"] = 0
    for text in (json.dumps(broken), json.dumps({"ways": {}}), "{not json"):
        path.write_text(text)
        with pytest.raises(RecordError, match="is not a make reproduce-timing measurement; run make reproduce-timing"):
            load_timing(path)


def test_run_rates_read_each_rows_record(tmp_path):
    import json

    from sparsevd.report.sentences import run_rates

    run = tmp_path / "lenet5_ard" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "time": t}) + "\n"
                                               for e, t in ((1, 30.0), (2, 40.0), (3, 52.0))))
    (run / "final.json").write_text(json.dumps({"metrics": {"epoch": 3}, "config": {}, "wall_time": 53.0,
                                                "environment": {"threads": 1}}))
    assert run_rates(tmp_path, {"lenet5_ard": 200}) == {"lenet5_ard": {
        "s_per_epoch": 11.0, "wall_s": 53.0, "threads": 1, "epochs": 3, "full_epochs": 200}}
