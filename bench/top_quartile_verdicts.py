"""Verdicts of the top quartile of a default sweep's trials (by the study's value: a complete
trial's value, a pruned one's last reported value): how many are labelled anything but
healthy.

    python -m bench.top_quartile_verdicts digits digits-cnn
"""
import subprocess, sys, tempfile, os, math
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from sweeps.study.results import trial_value
for name in sys.argv[1:]:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "sweeps.run", "--objective", name, "--study", "q",
                        "--storage", f"sqlite:///{d}/o.db", "--tracking-uri", f"sqlite:///{d}/m.db",
                        "--no-plots", "--quiet"], check=True, cwd=d, env={**os.environ})
        study = optuna.load_study(study_name="q", storage=f"sqlite:///{d}/o.db")
        valued = [(trial_value(t), t) for t in study.trials if trial_value(t) is not None
                  and math.isfinite(trial_value(t))]
        valued.sort(key=lambda vt: vt[0])
        top = valued[:max(1, len(valued) // 4)]
        bad = [(t.number, t.user_attrs.get("verdict")) for _, t in top if t.user_attrs.get("verdict") != "healthy"]
        print(f"{name}: {len(top)} top-quartile trials of {len(valued)}, not healthy: {len(bad)} {bad}")
