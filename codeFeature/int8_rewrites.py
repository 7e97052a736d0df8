"""The int8 rewrites of a converted OpenVINO graph: the heavy convolutions in int8, laid out for the int8 kernels.

:func:`quantise_heavy_convolutions` fake-quantises the heavy convolutions' input and kernels (OpenVINO's
low-precision transformations then run them as u8 x s8), rewriting a tall one-column kernel polyphase
(:func:`polyphase_int8`) and a several-row kernel as stacked rows (:func:`stack_rows`); :func:`rows_as_columns`
transposes the one-row ones where that is faster. Every rewrite keeps the integer sums, so the answers
are the int8 convolution's. Which rewrites run is an :class:`Int8Options` argument (benchmarks compare
them by passing options, never by patching this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .cpu import INT8_EXACT_LEVELS

#: Log-mel range (``log10(1 + 10000 mel)``) the int8 timbral input covers; beyond it a value is clipped.
#: GTZAN's valid split reaches 6.4 (1 % of its values pass 5; clipping at 5 flipped 13 of its 253
#: segments, at 6.5 three, at 7.5 two, as many as bfloat16): the quantisation step is 7.5 / 255
#: (see :func:`quantise_heavy_convolutions`).
LOGMEL_RANGE = (0.0, 7.5)


@dataclass(frozen=True)
class Int8Options:
    """Which int8 rewrites a conversion runs. The defaults are the library's; benchmarks and tests pass
    others to compare (a conversion with other options is cached apart)."""

    #: The largest u8 input code; ``None``: :func:`int8_input_codes` of the plan's level.
    input_codes: Optional[int] = None
    #: A several-row kernel on one input channel as stacked rows (:func:`stack_rows`).
    stack_rows: bool = True
    #: A tall one-column kernel as a polyphase convolution (:func:`polyphase_int8`).
    polyphase: bool = True
    #: One-row int8 convolutions transposed (:func:`rows_as_columns`); ``None``: on the levels of
    #: :data:`TRANSPOSE_ROW_KERNELS_ON`.
    rows_as_columns: Optional[bool] = None

    def codes(self, level: str) -> int:
        return int8_input_codes(level) if self.input_codes is None else int(self.input_codes)

    def transposes_rows(self, precision: str, level: str) -> bool:
        """Whether a conversion at ``precision`` for ``level`` runs :func:`rows_as_columns`."""
        if precision != "int8":
            return False
        return level in TRANSPOSE_ROW_KERNELS_ON if self.rows_as_columns is None else bool(self.rows_as_columns)

    def key(self) -> tuple:
        """What of these options a cached conversion must agree with beyond the codes and the transposition
        (empty for the defaults, so that the library's own conversions keep their cache keys)."""
        return () if (self.stack_rows and self.polyphase) else (("rewrites", self.stack_rows, self.polyphase),)


DEFAULT_INT8_OPTIONS = Int8Options()


def int8_input_codes(level: str) -> int:
    """The largest u8 code the int8 input uses at ``level``: 255 where AVX-512 VNNI or AMX sums u8 x s8
    products in 32 bits (:data:`INT8_EXACT_LEVELS`), else 127. Without VNNI two products are added into a
    saturating 16-bit lane (``vpmaddubsw``): ``255 * 127 * 2`` overflows it, ``127 * 127 * 2 = 32258`` does
    not, so 7-bit input keeps every sum exact there (``python -m bench.int8_exactness``)."""
    return 255 if level in INT8_EXACT_LEVELS else 127


def quantise_input(source: Any, low: float, step: float, codes: int) -> Any:
    """``source`` fake-quantised to the u8 codes ``0..codes`` of ``low + k * step`` (clipped to that range).

    The quantiser keeps OpenVINO's 256 levels, so that its low-precision transformations run the
    convolution in u8; below 255 codes a clamp keeps the values on the lower ``codes + 1`` of them."""
    from openvino import opset13 as ops

    low, high = np.float32(low), np.float32(low + 255 * step)
    if codes < 255:
        source = ops.clamp(source, float(low), float(low + codes * step))
    return ops.fake_quantize(source, low, high, low, high, 256)


def quantise_heavy_convolutions(ov_model: Any, keras_model: Any, layer_names: list[str],
                                moments: Optional[dict[str, np.ndarray]] = None, *, input_codes: int = 255,
                                stack: bool = True, polyphase: bool = True) -> int:
    """Run the heavy convolutions of an OpenVINO model in int8, in place.

    The layers are ``layer_names`` and every layer ``moments`` calibrates (the model folder's int8
    calibration, :func:`codeFeature.quantise.read_calibration`: for musicnn its five front-end
    convolutions). Each is found by its weights: the OpenVINO ``Convolution`` whose constant kernel
    equals the named Keras ``Conv2D``'s (transposed to OIHW). Its input is quantised per tensor to 256
    levels over the image of :data:`LOGMEL_RANGE` by the model's ``input_bn`` batch norm (0 included:
    the time padding; ``input_codes + 1`` levels, :func:`int8_input_codes`), its kernel symmetrically per
    output channel to 255 levels; OpenVINO's low-precision transformations then run it as u8 x s8 with
    int32 accumulation. A calibrated layer
    has its kernel rounded by GPTQ (:func:`codeFeature.quantise.gptq_round`), the others by plain
    rounding. A tall one-column kernel on one input channel (musicnn's temporal convolutions) is
    rewritten polyphase first (:func:`polyphase_int8`), which int8 kernels run far better; ``stack`` and
    ``polyphase`` turn :func:`stack_rows` and :func:`polyphase_int8` off (to measure what they bring).

    Returns
    -------
    int
        How many convolutions were quantised.
    """
    from openvino import opset13 as ops

    from .quantise import gptq_round, kernel_scales

    moments = moments or {}
    kernels = {}
    for name in dict.fromkeys([*layer_names, *moments]):
        try:
            layer = keras_model.get_layer(name)
        except ValueError:
            continue
        if type(layer).__name__ == "Conv2D":
            kernels[name] = np.transpose(np.asarray(layer.kernel.numpy(), np.float32), (3, 2, 0, 1))
    low, high = input_range(keras_model)
    # the time padding's zeros must stay exact: put 0 on the u8 grid
    step = (high - low) / input_codes
    low = -round(-low / step) * step
    done = 0
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        weights = op.input(1).get_source_output().get_node()
        if weights.get_type_name() != "Constant":
            continue
        data = weights.get_data()
        name = next((n for n, k in kernels.items() if k.shape == data.shape and np.array_equal(k, data)), None)
        if name is None:
            continue
        rounded = gptq_round(data, moments[name]) if name in moments else data  # GPTQ's taps are on the grid
        if polyphase and polyphase_int8(ov_model, op, rounded, (low, low + input_codes * step),
                                        input_codes=input_codes):
            done += 1
            continue
        if stack:
            source, rounded = stack_rows(op, rounded)
        else:
            source = op.input(0).get_source_output()
        op.input(0).replace_source_output(quantise_input(source, low, step, input_codes).output(0))
        amax = kernel_scales(rounded).reshape(-1, 1, 1, 1)
        fqw = ops.fake_quantize(ops.constant(rounded), -amax, amax, -amax, amax, 255)
        op.input(1).replace_source_output(fqw.output(0))
        done += 1
    ov_model.validate_nodes_and_infer_types()
    return done


def stride_1_unpadded(conv: Any) -> bool:
    """Whether ``conv`` slides by 1 with no dilation and no padding (its output is its input less the kernel)."""
    attributes = conv.get_attributes()
    return list(attributes["strides"]) == [1, 1] and list(attributes["dilations"]) == [1, 1] \
        and not any(attributes["pads_begin"]) and not any(attributes["pads_end"])


def stack_rows(conv: Any, kernel: np.ndarray) -> tuple[Any, np.ndarray]:
    """The input and kernel of ``conv`` with its kernel rows made input channels, when it has one
    input channel, a ``(kh, kw)`` kernel of several rows and columns, stride 1 and no padding.

    Row ``i`` of the kernel reads the input shifted down by ``i`` rows, so ``kh`` shifted copies of
    the input stacked as channels, convolved with the ``(kh, 1, kw)`` kernel, give the same sums: the
    int8 kernels then have ``kh`` channels to sum at a time instead of one (musicnn's 7 x 67 timbral
    convolution: 17 % faster on a Zen 4, the 7 x 38 one unchanged). Otherwise both come back as they were.
    """
    from openvino import opset13 as ops

    out_channels, in_channels, height, width = kernel.shape
    source = conv.input(0).get_source_output()
    shape = conv.get_input_partial_shape(0)
    if in_channels != 1 or height < 2 or width < 2 or not stride_1_unpadded(conv) \
            or shape.rank.get_length() != 4 or not shape[2].is_static:
        return source, kernel
    out_rows = shape[2].get_length() - height + 1

    def const(values):
        return ops.constant(np.asarray(values, np.int64))

    rows = [ops.slice(source, const([i]), const([i + out_rows]), const([1]), const([2])) for i in range(height)]
    return ops.concat(rows, 1).output(0), np.ascontiguousarray(kernel[:, 0, :, None, :])


#: ISA levels where :func:`rows_as_columns` runs: AMX's int8 kernels run musicnn's timbral convolutions about twice
#: as fast transposed, AVX512-VNNI's slower (figures and commands in docs/performance.md, measured with
#: ``python -m bench.openvino_layers [--isa AVX512_CORE_BF16] [--rows-as-columns on|off]``).
TRANSPOSE_ROW_KERNELS_ON = ("amx",)


def rows_as_columns(ov_model: Any) -> int:
    """Transpose every int8 convolution whose kernel is one row wide, pooled along that row only, in place.

    Such a convolution (musicnn's timbral ones once :func:`stack_rows` made their kernel rows input channels:
    a ``(1, kw)`` kernel over frequency, max-pooled over all of frequency) is computed on the input with its
    last two axes swapped, with the kernel and the pooling window swapped alike, and the pooled result
    swapped back. Every sum has the same integer terms, so the outputs are bit-identical; only the layout the
    int8 kernels see changes. Returns how many convolutions were rewritten.
    """
    from openvino import opset1, opset13 as ops

    def levels(fq):  # a FakeQuantize's ranges and levels, to quantise another tensor alike
        return [fq.input(i).get_source_output() for i in range(1, 5)] + [fq.get_attributes()["levels"]]

    swap = ops.constant(np.array([0, 1, 3, 2], np.int64))
    done = 0
    for conv in ov_model.get_ordered_ops():
        if conv.get_type_name() != "Convolution":
            continue
        data, weights = (conv.input(i).get_source_output().get_node() for i in range(2))
        if data.get_type_name() != "FakeQuantize" or weights.get_type_name() != "FakeQuantize":
            continue
        kernel = weights.input(0).get_source_output().get_node()
        if kernel.get_type_name() != "Constant" or kernel.get_output_partial_shape(0).rank.get_length() != 4 \
                or kernel.get_data().shape[2] != 1 or not stride_1_unpadded(conv):
            continue
        consumers = list(conv.output(0).get_target_inputs())
        add = consumers[0].get_node() if len(consumers) == 1 else None
        if add is None or add.get_type_name() != "Add":
            continue
        bias = add.input(1 - consumers[0].get_index()).get_source_output()
        pools = list(add.output(0).get_target_inputs())
        pool = pools[0].get_node() if len(pools) == 1 else None
        if bias.get_node().get_type_name() != "Constant" or bias.get_partial_shape().rank.get_length() != 4 \
                or list(bias.get_shape())[2:] != [1, 1] or pool is None or pool.get_type_name() != "MaxPool":
            continue
        window = pool.get_attributes()
        if list(window["kernel"])[0] != 1 or list(window["strides"])[0] != 1 \
                or list(window.get("dilations", [1, 1])) != [1, 1] \
                or any(window["pads_begin"]) or any(window["pads_end"]) \
                or (pool.get_output_size() > 1 and pool.output(1).get_target_inputs()):
            continue
        x = ops.fake_quantize(ops.transpose(data.input(0).get_source_output(), swap), *levels(data))
        w = ops.fake_quantize(ops.constant(np.ascontiguousarray(kernel.get_data().transpose(0, 1, 3, 2))),
                              *levels(weights))
        y = ops.add(ops.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1], "valid"), bias)
        pooled = opset1.max_pool(y, list(window["strides"])[::-1], [0, 0], [0, 0], list(window["kernel"])[::-1],
                                 window["rounding_type"], window["auto_pad"])
        back = ops.transpose(pooled.output(0), swap)
        for target in list(pool.output(0).get_target_inputs()):
            target.replace_source_output(back.output(0))
        done += 1
    ov_model.validate_nodes_and_infer_types()
    return done


#: Phases of the polyphase rewrite (:func:`polyphase_int8`): 4 was the fastest of 4, 8 and 16 measured.
POLYPHASE = 4


def polyphase_int8(ov_model: Any, conv: Any, kernel: np.ndarray, input_range: tuple[float, float], *,
                    input_codes: int = 255) -> bool:
    """Rewrite ``conv -> Add(bias) [-> Relu] -> MaxPool over every column`` as an int8 polyphase
    convolution, in place, when ``conv`` has a tall ``(k, 1)`` kernel on one input channel.

    One input channel leaves int8 kernels nothing to sum four at a time, so such a convolution runs
    no faster in int8 than in float32. Cut into :data:`POLYPHASE` phases, time step ``t = P b + j`` of
    the input becomes channel ``j`` of row ``b``: ``out[P a + r] = sum_{m, j} in[a + m, j] W_r[m, j]``
    with ``W_r[m, j] = w[P m + j - r]`` (zero outside the kernel), one convolution of ``P`` input and
    ``P x out`` output channels, ``(k + P - 1) / k`` of the multiply-adds. It is pooled over the columns
    before the phases are put back in time order. Integer sums are exact, so the result is the int8
    direct convolution's.

    Returns
    -------
    bool
        Whether ``conv`` was rewritten (``False``: the pattern did not match; nothing changed).
    """
    from openvino import opset13 as ops

    from .quantise import kernel_scales

    out_channels, in_channels, height, width = kernel.shape
    attributes = conv.get_attributes()
    if in_channels != 1 or width != 1 or height < 2 * POLYPHASE:
        return False
    if list(attributes["strides"]) != [1, 1] or list(attributes["dilations"]) != [1, 1] \
            or attributes["pads_begin"][1] or attributes["pads_end"][1]:
        return False
    shape = conv.get_input_partial_shape(0)
    if shape.rank.get_length() != 4 or not (shape[2].is_static and shape[3].is_static):
        return False
    rows, columns = shape[2].get_length(), shape[3].get_length()

    def only_consumer(node):
        targets = list(node.output(0).get_target_inputs())
        return targets[0] if len(targets) == 1 else None

    add_input = only_consumer(conv)
    if add_input is None or add_input.get_node().get_type_name() != "Add":
        return False
    add = add_input.get_node()
    bias = add.input(1 - add_input.get_index()).get_source_output().get_node()
    if bias.get_type_name() != "Constant" or bias.get_data().size != out_channels:
        return False
    tail = add
    relu = False
    following = only_consumer(tail)
    if following is not None and following.get_node().get_type_name() == "Relu":
        tail, relu = following.get_node(), True
        following = only_consumer(tail)
    if following is None or following.get_node().get_type_name() != "MaxPool":
        return False
    pool = following.get_node()
    pool_attributes = pool.get_attributes()
    if list(pool_attributes["kernel"]) != [1, columns] or any(pool_attributes["pads_begin"]) \
            or any(pool_attributes["pads_end"]):
        return False

    phases = POLYPHASE
    pad_before, pad_after = int(attributes["pads_begin"][0]), int(attributes["pads_end"][0])
    out_rows = rows + pad_before + pad_after - height + 1
    blocks_out = -(-out_rows // phases)
    taps = -(-(height + phases - 1) // phases)
    blocks_in = blocks_out + taps - 1
    w = kernel[:, 0, :, 0]  # (out, k)
    poly = np.zeros((phases, out_channels, phases, taps, 1), np.float32)  # r, c, j, m
    for r in range(phases):
        for m in range(taps):
            for j in range(phases):
                k = phases * m + j - r
                if 0 <= k < height:
                    poly[r, :, j, m, 0] = w[:, k]
    poly = poly.reshape(phases * out_channels, phases, taps, 1)

    def const(values, dtype=np.int64):
        return ops.constant(np.asarray(values, dtype))

    low, high = input_range
    x = ops.pad(conv.input(0).get_source_output(), const([0, 0, pad_before, 0]),
                const([0, 0, blocks_in * phases - rows - pad_before, 0]), "constant")
    x = ops.reshape(x, const([-1, blocks_in, phases, columns]), False)
    x = ops.transpose(x, const([0, 2, 1, 3]))  # (n, phase j, block, column)
    x = quantise_input(x, low, (high - low) / input_codes, input_codes)
    amax = np.tile(kernel_scales(kernel), phases).reshape(-1, 1, 1, 1)
    w_q = ops.fake_quantize(ops.constant(poly), -amax, amax, -amax, amax, 255)
    y = ops.convolution(x, w_q, [1, 1], [0, 0], [0, 0], [1, 1])  # (n, r * out + c, block, column)
    y = ops.add(y, ops.constant(np.tile(bias.get_data().reshape(-1), phases).reshape(1, -1, 1, 1)
                                .astype(np.float32)))
    if relu:
        y = ops.relu(y)
    y = ops.max_pool(y, [1, 1], [1, 1], [0, 0], [0, 0], [1, columns]).output(0)
    y = ops.reshape(y, const([-1, phases, out_channels, blocks_out]), False)
    y = ops.transpose(y, const([0, 2, 3, 1]))  # (n, c, block, phase r): time order
    y = ops.reshape(y, const([-1, out_channels, blocks_out * phases, 1]), False)
    y = ops.slice(y, const([0]), const([out_rows]), const([1]), const([2]))
    for target in list(pool.output(0).get_target_inputs()):
        target.replace_source_output(y.output(0))
    return True


def input_range(keras_model: Any) -> tuple[float, float]:
    """The range of the input batch norm's output over :data:`LOGMEL_RANGE`, 0 included."""
    try:
        bn = keras_model.get_layer("input_bn")
    except ValueError:
        return LOGMEL_RANGE
    gamma, beta, mean, variance = (np.asarray(w.numpy(), np.float64) for w in bn.weights)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    ends = np.stack([(x - mean) * scale + beta for x in LOGMEL_RANGE])
    return float(min(ends.min(), 0.0)), float(max(ends.max(), 0.0))
