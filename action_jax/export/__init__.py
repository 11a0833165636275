"""Exporting recognizers (TSN, TSM, I3D) and localizers (BMN, BSN's TEM and PEM) for
inference engines.

    python -m action_jax.export --config configs/tsn_k400.py --checkpoint tsn.pth \
        --format onnx --out tsn.onnx [--opset 17] [--batch-size dynamic|N] [--softmax]
    python -m action_jax.export ... --format saved_model --out tsn_savedmodel/
    python -m action_jax.export --config configs/bmn_anet.py --checkpoint bmn.pth --out bmn.onnx

The config's `model.type` picks the kind: Recognizer2D/Recognizer3D, or BMN/TEM/PEM.

Formats:
  onnx         ONNX through jax2onnx, opset 17 by default (what TensorRT 8.6+ reads; any
               opset jax2onnx supports can be asked for). Runs on onnxruntime and, after
               `trtexec --onnx=model.onnx --saveEngine=model.engine`, on TensorRT
               (action_jax.export.runtime has thin wrappers for both).
  saved_model  a TensorFlow SavedModel through jax2tf, with a polymorphic batch dimension;
               serving signature `serving_default`: {'input'} -> {'scores'} (localizers:
               their named outputs, below). The computation is serialised StableHLO (one
               XlaCallModule op) lowered for CPU and CUDA.

The exported function is the model's test-mode prediction, as `--mode test` computes it;
each model describes its inputs and outputs itself (`export_spec()`, models/export_spec.py),
which export/signature.py turns into shapes, names and metadata. Recognizers:

  input  'input'   float32 [N, F, H, W, 3] for 2D models (TSN, TSM: F = views x frames,
                   e.g. 25 clips x 10 crops = 250 for TSN's K400 test) or [N, V, T, H, W, 3]
                   for 3D models (I3D: V views of T frames). RGB, channels last, normalised
                   as the config's data_preprocessor does: (pixel - mean) / std with pixels
                   in 0..255 (ImageNet statistics by default). F/V/T/H/W come from the
                   config's test pipeline (SampleFrames, crops, FormatShape) unless
                   `--input-shape` gives them; N is dynamic unless `--batch-size N`.
  output 'scores'  float32 [N, num_classes]: per-video scores after the head's
                   average_clips ('prob': mean of per-view softmax, 'score': mean of raw
                   scores). `--softmax` makes it 'prob' whatever the config says.

Localizers (`model.predict`: probabilities, after the sigmoids):

  BMN  input 'input' float32 [N, T, C]: T = temporal_dim steps of C = feat_dim features, as
       LoadLocalizationFeature reads them (channels last; MMAction2's [N, C, T] transposed).
       outputs 'confidence_map' [N, D, T, 2] (D = T durations: [n, d, s] is the proposal
       of start s and duration d + 1; channel 0 regression (IoU), 1 classification),
       'start' [N, T], 'end' [N, T].
  TEM  input as BMN's (C = tem_feat_dim); outputs 'action', 'start', 'end', each [N, T].
  PEM  input 'input' float32 [N, P, C]: the BSP features of P proposals (LoadProposals'
       bsp_feature, zero-padded to its top_k; C = pem_feat_dim); output 'iou_scores' [N, P].

  T and C come from the model's export_spec (temporal_dim, feature size); P from the
  test pipeline's LoadProposals top_k. `--input-shape T C` (PEM: P C) overrides them (BMN's
  T is fixed by its sampling mask; TEM and PEM take any T or P).

Why jax2onnx and not jax2tf + tf2onnx: current JAX exports to TensorFlow only by native
serialisation, so jax2tf emits a single `XlaCallModule` op holding StableHLO; tf2onnx has
no conversion for that op (the old non-native jax2tf path that produced plain TF ops is
gone). jax2onnx converts the jaxpr primitive by primitive into ONNX operators instead, so
the graph is plain Conv/MaxPool/MatMul/... that onnxruntime and TensorRT run natively.
jax2tf remains the right tool for the SavedModel, where XlaCallModule is native.

Every export is checked by default: the exported model is run (onnxruntime / TensorFlow)
on random input at batch sizes 1 and 3 (or the fixed batch size) and each output must equal
the JAX model's within 1e-4 of that output's scale.
"""

FORMATS = ('onnx', 'saved_model')
