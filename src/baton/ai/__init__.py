"""AI for unstructured input: providers behind one interface, and the offline default."""
