"""README's first equal-time table rebuilds from the committed folders alone, with its paired verdict."""

from experiments import equal_time_check


def test_the_equal_time_table_rebuilds_from_committed_folders():
    lines = equal_time_check.main()
    assert len(lines) == 2 + len(equal_time_check.ARMS) + len(equal_time_check.PAIRS)
    itd_row, itd_pair = lines[2], lines[-2]
    assert itd_row.startswith("| itd, 100k steps | 645 |")  # steps x the committed calibration
    # CDL (20k steps, about twice the time) above ITD (100k steps) at every seed, on every metric
    assert itd_pair.count("(3 of 3 above)") == len(equal_time_check.METRICS)
