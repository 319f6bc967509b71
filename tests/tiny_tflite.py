"""Build tiny int8 TFLite flatbuffers by hand (with the tflite schema package's builders), for
file-format cases converters do not produce on demand, e.g. weights stored outside the
flatbuffer (Buffer.offset/size, the > 2 GB layout)."""
import flatbuffers
import numpy as np
import tflite


def _ivec(b, start_fn, values, kind="int32"):
    start_fn(b, len(values))
    for v in reversed(list(values)):
        {"int32": b.PrependInt32, "int64": b.PrependInt64, "float32": b.PrependFloat32}[kind](v)
    return b.EndVector()


def _quant(b, scale, zp):
    s = _ivec(b, tflite.QuantizationParametersStartScaleVector, scale, "float32")
    z = _ivec(b, tflite.QuantizationParametersStartZeroPointVector, zp, "int64")
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, s)
    tflite.QuantizationParametersAddZeroPoint(b, z)
    return tflite.QuantizationParametersEnd(b)


def fully_connected_model(weights: np.ndarray, bias: np.ndarray, external: bool = False,
                          in_q=(0.05, -3), w_scale=0.02, out_q=(0.1, 2)) -> bytes:
    """One FULLY_CONNECTED: int8 [1, n_in] -> int8 [1, n_out]. With ``external`` the weight
    and bias buffers are stored after the flatbuffer (Buffer.offset/size). ``w_scale``: one
    weight scale, or one per output channel (per-channel quantization)."""
    n_out, n_in = weights.shape
    w_raw = np.ascontiguousarray(weights, dtype=np.int8).tobytes()
    b_raw = np.ascontiguousarray(bias, dtype="<i4").tobytes()
    b = flatbuffers.Builder(1024)

    names = [b.CreateString(n) for n in ("input", "weights", "bias", "output")]
    ws = [float(v) for v in np.atleast_1d(w_scale)]
    quants = [_quant(b, [in_q[0]], [in_q[1]]), _quant(b, ws, [0] * len(ws)),
              _quant(b, [in_q[0] * v for v in ws], [0] * len(ws)), _quant(b, [out_q[0]], [out_q[1]])]
    shapes = [(1, n_in), (n_out, n_in), (n_out,), (1, n_out)]
    types = [tflite.TensorType.INT8, tflite.TensorType.INT8, tflite.TensorType.INT32, tflite.TensorType.INT8]
    bufidx = [0, 1, 2, 0]
    tensors = []
    for i in range(4):
        sh = _ivec(b, tflite.TensorStartShapeVector, shapes[i])
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, sh)
        tflite.TensorAddType(b, types[i])
        tflite.TensorAddBuffer(b, bufidx[i])
        tflite.TensorAddName(b, names[i])
        tflite.TensorAddQuantization(b, quants[i])
        tensors.append(tflite.TensorEnd(b))

    tflite.FullyConnectedOptionsStart(b)
    tflite.FullyConnectedOptionsAddFusedActivationFunction(b, tflite.ActivationFunctionType.NONE)
    opts = tflite.FullyConnectedOptionsEnd(b)
    ins = _ivec(b, tflite.OperatorStartInputsVector, [0, 1, 2])
    outs = _ivec(b, tflite.OperatorStartOutputsVector, [3])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, ins)
    tflite.OperatorAddOutputs(b, outs)
    tflite.OperatorAddBuiltinOptionsType(b, tflite.BuiltinOptions.FullyConnectedOptions)
    tflite.OperatorAddBuiltinOptions(b, opts)
    op = tflite.OperatorEnd(b)

    tflite.SubGraphStartTensorsVector(b, 4)
    for t in reversed(tensors):
        b.PrependUOffsetTRelative(t)
    tv = b.EndVector()
    tflite.SubGraphStartOperatorsVector(b, 1)
    b.PrependUOffsetTRelative(op)
    ov = b.EndVector()
    gi = _ivec(b, tflite.SubGraphStartInputsVector, [0])
    go = _ivec(b, tflite.SubGraphStartOutputsVector, [3])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tv)
    tflite.SubGraphAddInputs(b, gi)
    tflite.SubGraphAddOutputs(b, go)
    tflite.SubGraphAddOperators(b, ov)
    sg = tflite.SubGraphEnd(b)

    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, tflite.BuiltinOperator.FULLY_CONNECTED)
    tflite.OperatorCodeAddBuiltinCode(b, tflite.BuiltinOperator.FULLY_CONNECTED)
    tflite.OperatorCodeAddVersion(b, 4)
    oc = tflite.OperatorCodeEnd(b)

    # buffers: 0 empty; 1 weights; 2 bias. External: placeholders for offset/size patched below.
    # Offsets relative to the start of the file; the payload goes after the flatbuffer, 16-aligned.
    buf_offsets = []
    sentinels = {1: 0xA5A5A5A5A5A5A501, 2: 0xA5A5A5A5A5A5A502}
    for bi, raw in enumerate((None, w_raw, b_raw)):
        if raw is not None and not external:
            b.StartVector(1, len(raw), 16)
            for byte in reversed(raw):
                b.PrependByte(byte)
            data = b.EndVector()
        else:
            data = None
        tflite.BufferStart(b)
        if data is not None:
            tflite.BufferAddData(b, data)
        if raw is not None and external:
            tflite.BufferAddOffset(b, sentinels[bi])  # patched after Finish
            tflite.BufferAddSize(b, len(raw))
        buf_offsets.append(tflite.BufferEnd(b))
    tflite.ModelStartBuffersVector(b, 3)
    for x in reversed(buf_offsets):
        b.PrependUOffsetTRelative(x)
    bv = b.EndVector()
    tflite.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(sg)
    sv = b.EndVector()
    tflite.ModelStartOperatorCodesVector(b, 1)
    b.PrependUOffsetTRelative(oc)
    cv = b.EndVector()
    desc = b.CreateString("tinycluster test model")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, cv)
    tflite.ModelAddSubgraphs(b, sv)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, bv)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=b"TFL3")
    fb = bytearray(b.Output())
    if not external:
        return bytes(fb)
    out = fb
    for bi, raw in ((1, w_raw), (2, b_raw)):
        pad = (-len(out)) % 16
        out += b"\0" * pad
        off = len(out)
        pos = out.find(sentinels[bi].to_bytes(8, "little"))
        assert pos >= 0
        out[pos:pos + 8] = off.to_bytes(8, "little")
        out += raw
    return bytes(out)
