"""The data-scientist walk-through of issue 16 (bench/python/walkthrough.sh runs it in a
fresh virtualenv): from a fitted scikit-learn model to an authenticated prediction. The
five lines between the markers are what README and docs/python.md show; fit.py (the fitted
model) is not counted."""

import time

started = time.monotonic()
exec(open(__file__.replace("walkthrough.py", "fit.py")).read())  # model, X
fitted = time.monotonic()
# --- the five lines
import palisade                         # model: a fitted scikit-learn model; X: its training rows
palisade.save(model, X[:20], name="churn", version="1.0.0", owners=["alice@example.com"])
server = palisade.serve()               # or `palisade serve` in a terminal
client = palisade.Client(server.url, token=server.token("alice@example.com"))
print(client.predict("churn", X[:5]))   # {"label": array([...]), "probabilities": array([[...]])}
# --- end
done = time.monotonic()
server.stop()
print(f"fit: {fitted - started:.2f} s; the five lines: {done - fitted:.2f} s")
