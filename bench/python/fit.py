# The fitted model of the walk-through (bench/python/walkthrough.py); not counted.
# Data scientist's state before the walk-through: a fitted model (not counted).
import pandas as pd, numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
rng = np.random.default_rng(0); n = 500
X = pd.DataFrame({"age": rng.uniform(18, 80, n), "city": rng.choice(["paris", "lyon"], n), "visits": rng.integers(0, 10, n)})
y = np.where(X.age > 45, "churn", "stay")
model = Pipeline([("pre", ColumnTransformer([("n", StandardScaler(), ["age"]), ("c", OneHotEncoder(), ["city", "visits"])])), ("lr", LogisticRegression())]).fit(X, y)
