"""Training data: the synthetic labelled video generator and the list-file datasets that read videos.

The project cannot download Kinetics, so `train.data.synthetic` writes a PaddleVideo-style dataset
(videos + `train.list` / `val.list` / `test.list` + `label_list.txt`) whose classes can only be told
apart by how a clip changes over time, which is exactly what the temporal shift of PP-TSM is for.
"""
