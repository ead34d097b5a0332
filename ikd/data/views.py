"""Stage 3 of the dataset build: the frozen teacher's outputs for K views of every face."""

from __future__ import annotations

import os

import numpy as np
import torch

from ikd.data import schema
from ikd.models.teacher import augment, standardize
from ikd.train.teacher import load_teacher


class TeacherViews:
    """Ray Data callable class: the teacher's outputs for K views of each face, loaded once.

    View 0 is the face as cropped; views 1 … K−1 are augmented with a generator seeded by the
    row's key and the view, so a face's views do not depend on its batch. The forward pass is
    batched, so outputs agree across batchings (other CPU counts) to float rounding (~1e-7), not
    bit for bit. Faces are not passed on: they stay in pairs/.
    """

    def __init__(self, teacher_folder: str | os.PathLike, shapes: schema.Shapes) -> None:
        torch.set_num_threads(1)
        self.teacher = load_teacher(teacher_folder)
        self.shapes = shapes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        faces = standardize(torch.from_numpy(self.shapes.decode_face(list(batch[schema.FACE]))))
        views = [faces]
        for view in range(1, self.shapes.views):
            views.append(
                torch.cat(
                    [
                        augment(face[None], torch.Generator().manual_seed(int(key) * 1024 + view))
                        for face, key in zip(faces, batch[schema.KEY], strict=True)
                    ]
                )
            )
        embedding, logits = self.teacher(torch.cat(views))  # (K·B, 512), (K·B, N)
        count = len(faces)
        embedding = embedding.reshape(self.shapes.views, count, -1).transpose(0, 1).numpy()
        logits = logits.reshape(self.shapes.views, count, -1).transpose(0, 1).numpy()
        return {
            **{name: values for name, values in batch.items() if name != schema.FACE},
            schema.TEACHER_EMBEDDING: schema.encode(embedding),
            schema.TEACHER_LOGITS: schema.encode(logits),
        }
