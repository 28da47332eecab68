"""What a user gets out: the weights file, the compact exporter and its stand-alone reader, bytes and
threshold sweeps. Nothing here imports training."""
