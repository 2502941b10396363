"""Neural retargeting: features, pair datasets, models (NMR / IKMR), training and inference."""
