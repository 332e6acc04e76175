"""The comparison study (`python -m study`): plan, run, evaluate and report every method at one budget.

    __main__   the program: flags, the three phases, the report
    plan       `Run`, the runs of a budget and their command-line overrides, final_eval.json
    runner     subprocesses, at most N at a time, resumed and skipped by their files
    evaluate   the final evaluation of one checkpoint (`python -m study.evaluate`), several modes and N
    records    run directories -> per-seed records of the headline numbers and curves
    stats      mean ± std, IQM and stratified-bootstrap intervals (rliable)
    figures    learning-curve PNGs
    tables     the offline, online and aggregate tables
    reading    the "Reading the numbers" statements
    papers     the papers' tables and the commands that reproduce them
    report     results.md from all of the above

Budgets, methods and recipes live in configs/results.py.
"""
