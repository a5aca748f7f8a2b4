"""The command lines: sched-opt (opt.py) and sched-run (run.py); sched-tune lives with the tuner."""
