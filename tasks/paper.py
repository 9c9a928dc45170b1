"""Every built-in dataset (one module each) registered; `REGISTERED` maps dataset -> names."""
from t5x_sbs.tasks import asdiv, cose, cqa, gsm8k, nli, svamp

REGISTERED = {"cqa": cqa.TASKS, "cose": cose.TASKS, "svamp": svamp.TASKS, **nli.TASKS,
              "gsm8k": gsm8k.TASKS, "asdiv": asdiv.TASKS, "svamp_asdiv": asdiv.SVAMP_MIXTURES}
BUILTIN_METRICS = {"cqa": cqa.METRIC, "cose": cose.METRIC, "svamp": svamp.METRIC, "anli1": nli.METRIC,
                   "esnli": nli.METRIC, "gsm8k": gsm8k.METRIC, "asdiv": asdiv.METRIC}
