"""The networks: gait students (students.py) and the frozen face teacher (teacher.py); their
weights saved and loaded anywhere `ikd.storage` reaches (weights.py). Torch-free itself: the
dataset schema reads EMBEDDING_DIM from here."""

EMBEDDING_DIM = 512  # FaceNet's (InceptionResnetV1) embedding width: p_t, and p_s projects to it
