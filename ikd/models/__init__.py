"""The networks: gait students (students.py) and the frozen face teacher (teacher.py)."""

EMBEDDING_DIM = 512  # FaceNet's (InceptionResnetV1) embedding width: p_t, and p_s projects to it
