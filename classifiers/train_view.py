"""Train the echo view CNN on synthetic phantoms and write its weights and held-out metrics.

    python -m radiomicsd.classifiers.train_view --out classifiers/view_cnn.weights.h5 --seed 0

Every image is a ``radiomicsd.testing.phantoms`` heart (A4C, PSAX or PLAX) rendered at a frame
size of a common ultrasound device, dressed as a screen capture (burned-in text, colour bar, ECG
trace, colour-Doppler blobs kept or blacked out as the Doppler segmentation would, extra noise),
then passed through ``pipeline.rhd.view.preprocess`` exactly as at inference. The held-out set
comes from an independent random stream of the same seed. Training is the pilot's: Adam,
learning rate 1e-3, categorical cross-entropy. Everything derives from ``--seed``; on the same
machine and library versions a re-run gives the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from radiomicsd.pipeline.rhd import view
from radiomicsd.testing import phantoms

#: Frame sizes (H, W) to render at: the pilot's device and common landscape captures.
FRAME_SHAPES = ((320, 240), (480, 640), (600, 800), (576, 720), (434, 636), (768, 1024))

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def echo_frame(view_name: str, rng: np.random.Generator) -> np.ndarray:
    """One synthetic echo screen capture of a view.

    Parameters
    ----------
    view_name : one of ``radiomicsd.testing.phantoms.VIEWS``.
    rng : source of every random choice.

    Returns
    -------
    frame : uint8 BGR (H, W, 3), H x W one of ``FRAME_SHAPES``.
    """
    h, w = FRAME_SHAPES[rng.integers(len(FRAME_SHAPES))]
    phantom = phantoms.sample_phantom(view_name, (h, w), rng)
    grey = phantoms.render_phantom(phantom, rng.random(), rng)
    fan = phantoms.sector_mask((h, w), phantom.apex, phantom.radius, phantom.half_angle_deg)
    if rng.random() < 0.4:  # a second, additive noise floor, as another device would show
        noise = rng.rayleigh(rng.uniform(4.0, 20.0), (h, w)).astype(np.float32)
        mixed = np.clip(rng.uniform(0.7, 1.0) * grey + noise, 0, 255).astype(np.uint8)
        grey = np.where(fan, mixed, 0).astype(np.uint8)
    if rng.random() < 0.25:
        grey = grey[:, ::-1].copy()  # the mirrored display convention
    frame = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if rng.random() < 0.35:
        _doppler_blobs(frame, phantom, rng, blank=rng.random() < 0.5)
    _screen_furniture(frame, rng)
    return frame


def _doppler_blobs(
    frame: np.ndarray, phantom: phantoms.Phantom, rng: np.random.Generator, blank: bool
) -> None:
    """Colour-flow ellipses inside the sector; ``blank`` leaves black holes instead, as the
    anatomic image has after the Doppler pixels were split off."""
    ax, ay = phantom.apex
    for _ in range(rng.integers(1, 4)):
        angle = rng.uniform(-0.7, 0.7) * phantom.half_angle_deg
        depth = rng.uniform(0.3, 0.8) * phantom.radius
        cx = int(ax + depth * math.sin(math.radians(angle)))
        cy = int(ay + depth * math.cos(math.radians(angle)))
        axes = (int(rng.uniform(0.03, 0.1) * phantom.radius),
                int(rng.uniform(0.03, 0.08) * phantom.radius))
        colour = (0, 0, 0) if blank else (
            (int(rng.integers(150, 256)), int(rng.integers(0, 80)), 0) if rng.random() < 0.5
            else (0, int(rng.integers(0, 80)), int(rng.integers(150, 256)))
        )
        cv2.ellipse(frame, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)


def _screen_furniture(frame: np.ndarray, rng: np.random.Generator) -> None:
    """Burned-in text, a colour bar and an ECG trace around the sector, each only sometimes."""
    h, w = frame.shape[:2]
    scale = max(0.3, w / 1600) * rng.uniform(0.8, 1.3)
    line = int(30 * scale) + 4
    white = (255, 255, 255)
    if rng.random() < 0.7:
        for i in range(rng.integers(1, 5)):
            text = "".join(chr(c) for c in rng.integers(48, 91, rng.integers(6, 18)))
            cv2.putText(frame, text, (4, line * (i + 1)), _FONT, scale, white, 1, cv2.LINE_AA)
    if rng.random() < 0.6:
        clock = f"{rng.integers(24):02d}:{rng.integers(60):02d}:{rng.integers(60):02d}"
        cv2.putText(frame, clock, (int(0.74 * w), line), _FONT, scale, white, 1, cv2.LINE_AA)
    if rng.random() < 0.5:
        x0, y0, y1 = 4, int(0.3 * h), int(0.6 * h)
        ramp = np.linspace(255, 0, y1 - y0)[:, None]
        frame[y0:y1, x0 : x0 + max(6, w // 60), 2] = ramp
        frame[y0:y1, x0 : x0 + max(6, w // 60), 0] = ramp[::-1]
    if rng.random() < 0.6:
        xs = np.arange(w)
        period = rng.uniform(60, 120)
        beat = ((xs + rng.uniform(0, period)) % period) / period
        y0 = int(0.94 * h)
        ys = (h - 3 - np.exp(-((beat - 0.3) ** 2) / 0.0008) * (h - y0 - 5)).astype(np.int32)
        pts = np.stack([xs, ys], axis=1).reshape(-1, 1, 2)
        cv2.polylines(frame, [pts], False, (40, 220, 40), 1)


def make_dataset(n: int, seed: int | np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    """``n`` preprocessed phantom frames with balanced, shuffled labels.

    Parameters
    ----------
    n : number of frames.
    seed : integer or seed sequence; the whole set is a function of it.

    Returns
    -------
    x : float16 (n, 320, 240, 1), ``pipeline.rhd.view.preprocess`` output (half precision to halve
        memory; the values span a few units, so the rounding is below 0.4 % of the range).
    y : int64 (n,), class index (0 = A4C, 1 = PSAX, 2 = PLAX).
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(phantoms.VIEWS))
    x = np.empty((n, *view.INPUT_SHAPE), np.float16)
    for i, label in enumerate(labels):
        x[i] = view.preprocess(echo_frame(phantoms.VIEWS[label], rng))
    return x, labels.astype(np.int64)


def _batches(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator):
    """A keras PyDataset of shuffled float32 batches; order reshuffled each epoch from ``rng``."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.order = rng.permutation(len(x))

        def __len__(self) -> int:
            return math.ceil(len(x) / size)

        def __getitem__(self, i: int):
            idx = np.sort(self.order[i * size : (i + 1) * size])
            return x[idx].astype(np.float32), keras.utils.to_categorical(y[idx], 3)

        def on_epoch_end(self) -> None:
            self.order = rng.permutation(len(x))

    return Batches()


def train(
    out: Path,
    metrics_path: Path,
    seed: int,
    n_train: int,
    n_test: int,
    epochs: int,
    batch_size: int,
) -> dict:
    """Generate data, train, evaluate on the held-out set, write weights and metrics."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    train_seq, test_seq, order_seq = np.random.SeedSequence(seed).spawn(3)

    t0 = time.perf_counter()
    x_train, y_train = make_dataset(n_train, train_seq)
    x_test, y_test = make_dataset(n_test, test_seq)
    t_data = time.perf_counter() - t0
    print(f"data: {n_train} train + {n_test} held-out frames in {t_data:.0f} s", flush=True)

    model = view.build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    t0 = time.perf_counter()
    history = model.fit(
        _batches(x_train, y_train, batch_size, np.random.default_rng(order_seq)),
        epochs=epochs,
        verbose=2,
    )
    t_train = time.perf_counter() - t0

    probs = np.concatenate([
        model.predict_on_batch(x_test[i : i + 16].astype(np.float32))
        for i in range(0, n_test, 16)
    ])
    pred = probs.argmax(axis=1)
    confusion = np.zeros((3, 3), np.int64)
    np.add.at(confusion, (y_test, pred), 1)
    accuracy = float((pred == y_test).mean())

    timed = min(32, n_test)
    t0 = time.perf_counter()
    for i in range(0, timed, 8):
        model(x_test[i : min(i + 8, timed)].astype(np.float32), training=False)
    ms_per_frame = (time.perf_counter() - t0) / timed * 1000

    out.parent.mkdir(parents=True, exist_ok=True)
    bare = view.build_model()  # not compiled: the file then holds no optimizer state (1/3 size)
    bare.set_weights(model.get_weights())
    bare.save_weights(str(out))
    weights = out.read_bytes()
    metrics = {
        "model": out.name,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "weights_bytes": len(weights),
        "held_out_accuracy": accuracy,
        "confusion_rows_true_cols_pred": confusion.tolist(),
        "classes": list(view.CLASSES),
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": "Adam lr 1e-3, categorical cross-entropy",
        "train_loss_per_epoch": [round(float(v), 5) for v in history.history["loss"]],
        "train_accuracy_per_epoch": [round(float(v), 5) for v in history.history["accuracy"]],
        "data_seconds": round(t_data, 1),
        "train_seconds": round(t_train, 1),
        "inference_ms_per_frame": round(ms_per_frame, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    metrics_path.write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m radiomicsd.classifiers.train_view",
        description="Train the echo view CNN on synthetic phantoms (A4C, PSAX, PLAX).",
    )
    here = Path(__file__).resolve().parent
    parser.add_argument("--out", type=Path, default=here / view.SHIPPED_WEIGHTS,
                        help="weights file to write, ending in .weights.h5 "
                             "(default: %(default)s)")
    parser.add_argument("--metrics", type=Path, default=None,
                        help="metrics JSON to write (default: <out without .weights.h5>"
                             ".metrics.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default: 0)")
    parser.add_argument("--n-train", type=int, default=1200,
                        help="training frames (default: %(default)s)")
    parser.add_argument("--n-test", type=int, default=300,
                        help="held-out frames (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=16, help="default: %(default)s")
    args = parser.parse_args(argv)
    if not args.out.name.endswith(".weights.h5"):
        parser.error("--out must end in .weights.h5")
    if min(args.n_train, args.n_test, args.epochs, args.batch_size) < 1:
        parser.error("--n-train, --n-test, --epochs and --batch-size must be positive")
    metrics_path = args.metrics or args.out.with_name(
        args.out.name.removesuffix(".weights.h5") + ".metrics.json"
    )
    metrics = train(args.out, metrics_path, args.seed, args.n_train, args.n_test, args.epochs,
                    args.batch_size)
    print(f"held-out accuracy {metrics['held_out_accuracy']:.4f} on {metrics['n_test']} frames; "
          f"confusion {metrics['confusion_rows_true_cols_pred']}; "
          f"wrote {args.out} ({metrics['weights_bytes']} bytes) and {metrics_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
