"""Models, training and prediction. Keras is imported lazily: call backend.init() first."""
