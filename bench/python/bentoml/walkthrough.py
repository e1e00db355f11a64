"""BentoML's documented quickstart (BentoML 1.4: bentoml.sklearn.save_model, a service.py
with @bentoml.service, `bentoml serve`, a client call) for the model of Palisade's
walk-through (../fit.py), run by bench/python/walkthrough.sh --bentoml in a fresh
virtualenv. Counted: the lines between the markers, service.py, and the one shell command
`bentoml serve service:Churn`. Timed: from the save to the first prediction (the server's
start included), as Palisade's five lines are."""

import os
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
started = time.monotonic()
exec(open(os.path.join(here, "..", "fit.py")).read())  # model, X
fitted = time.monotonic()
port = sys.argv[1]
# --- save (in the notebook)
import bentoml
bentoml.sklearn.save_model("churn", model)
# --- end
# The one shell command, `bentoml serve service:Churn` in a terminal (here on loopback and a
# free port; not counted as Python):
server = subprocess.Popen(
    [os.path.join(os.path.dirname(sys.executable), "bentoml"), "serve", "service:Churn", "--host", "127.0.0.1", "--port", port],
    cwd=here, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
try:
    while True:
        try:
            # --- call (in the notebook)
            client = bentoml.SyncHTTPClient(f"http://127.0.0.1:{port}")
            print(client.predict(input_data=X[:5]))
            # --- end
            break
        except Exception:
            if server.poll() is not None or time.monotonic() - fitted > 120:
                raise
            time.sleep(0.1)
    done = time.monotonic()
finally:
    os.killpg(server.pid, 15)
    server.wait()
print(f"fit: {fitted - started:.2f} s; save, serve and call: {done - fitted:.2f} s")
