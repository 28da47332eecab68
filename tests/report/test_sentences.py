"""The README's make-reproduce cost comes from the records trained wholly on a 2-core CPU."""
from sparsevd.report.sentences import REPRODUCE_ROWS, cpu_wall_times, wall_time_block


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
