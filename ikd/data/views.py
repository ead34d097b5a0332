"""Stage 3 of the dataset build: the frozen teacher's outputs for K views of every face."""

from __future__ import annotations

import os

import numpy as np
import torch

from ikd.data import schema
from ikd.face.teacher import load_teacher
from ikd.models.teacher import augment, standardize


class TeacherViews:
    """Ray Data callable class: the teacher's outputs for K views of each face, loaded once.

    View 0 is the face as cropped; views 1 … K−1 are augmented with a generator seeded by the
    row's key and the view, so a face's views do not depend on its batch. The teacher always
    runs on exactly CHUNK images (the last chunk padded) with one thread: on a CPU a face's
    outputs depend on the batch size and the thread count (~1e-7), never on its batch-mates, so
    they are the same bits however Ray Data cuts the blocks (another CPU count). Faces are not
    passed on: they stay in pairs/.
    """

    CHUNK = 32  # images per forward pass (the fastest of 4–128 at 80² faces on one thread)

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
        images = torch.cat(views)  # (K·B, 3, S, S)
        pad = -len(images) % self.CHUNK
        images = torch.cat([images, images.new_zeros(pad, *images.shape[1:])])
        outputs = [self.teacher(chunk) for chunk in images.split(self.CHUNK)]
        embedding = torch.cat([e for e, _ in outputs])[: len(images) - pad]  # (K·B, 512)
        logits = torch.cat([z for _, z in outputs])[: len(images) - pad]  # (K·B, N)
        count = len(faces)
        embedding = embedding.reshape(self.shapes.views, count, -1).transpose(0, 1).numpy()
        logits = logits.reshape(self.shapes.views, count, -1).transpose(0, 1).numpy()
        return {
            **{name: values for name, values in batch.items() if name != schema.FACE},
            schema.TEACHER_EMBEDDING: schema.encode(embedding),
            schema.TEACHER_LOGITS: schema.encode(logits),
        }
