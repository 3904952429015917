"""The seed paper's published per-layer tables, transcribed as data.

Source: "MobileNet" on CIFAR-10 (seed paper 001 of perfsim's reading list),
Section 5: Table 3 "I/O feature map size and location with internal memory used
and data movement size each layer" (bits) and Table 4 "Data Movement Time",
"Compute Time", "Performance Time" (seconds). Rows are the 27 conv layers in
execution order (stem, then dw/pw pairs); the FC layer is not in the tables.

Known errors of the tables, each checked by ``tests/test_paper_mobilenet.py``:
- Table 4 compute time is 2*MACs/1 TFLOPS; rows 4 and 24 (the stride-2 depthwise
  layers) were costed at the layer's *input* size, 4x the true MACs.
- Table 3 adds each layer's weights at 1 bit per weight (movement: twice that);
  rows 4 and 24 keep the input size; row 5 prints its 14x14x64 output as 200,704
  bits (true: 100,352) and moves 2x8,192 weight bits for a 64->64 layer's 4,096 (neither
  listed in perfsim's brief; found by the tests); row 9 moves 64x128 weights for a 128->128
  layer; row 13's output is 404,544 bits instead of 401,408; nothing is read back
  after the flush and the network output is never written; the flush at row 25
  means a 10^6-byte limit.
- The printed total (0.001340632 s) is not the sum of the rows (0.001335373 s);
  the difference equals row 7.
"""
from __future__ import annotations

# Table 1 "MobileNet Body and Head Architecture", the body: (type, stride, filter shape as
# printed) of the 27 conv layers in execution order; its "5x (Conv dw/s1, conv/s1)" row is
# written out. The paper stores each filter value as 1 bit in Table 3 (memory adds the
# weights once, movement twice).
_DW_PW_256 = (("dw", 1, (3, 3, 256)), ("conv", 1, (1, 1, 256, 256)))
TABLE1_BODY: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("conv", 1, (3, 3, 3, 32)),
    ("dw", 1, (3, 3, 32)),
    ("conv", 1, (1, 1, 32, 64)),
    ("dw", 2, (3, 3, 64)),
    ("conv", 1, (1, 1, 64, 64)),
    ("dw", 1, (3, 3, 64)),
    ("conv", 1, (1, 1, 64, 128)),
    ("dw", 1, (3, 3, 128)),
    ("conv", 1, (1, 1, 128, 128)),
    ("dw", 1, (3, 3, 128)),
    ("conv", 1, (1, 1, 128, 128)),
    ("dw", 1, (3, 3, 128)),
    ("conv", 1, (1, 1, 128, 256)),
    *(_DW_PW_256 * 5),
    ("dw", 2, (3, 3, 256)),
    ("conv", 1, (1, 1, 256, 256)),
    ("dw", 1, (3, 3, 256)),
    ("conv", 1, (1, 1, 256, 256)),
)

# Rows (1-based) where Table 3 counts other weights than Table 1's filter shape: rows 5 and 9
# add 8,192 weight bits to memory used and move 2 x 8,192 (Table 1: 1x1x64x64 = 4,096 and
# 1x1x128x128 = 16,384). Read off Table 3's memory column; its movement column agrees.
TABLE3_WEIGHT_BITS_NOT_TABLE1 = {5: 8192, 9: 8192}

# Table 3: (I/O feature map sizes in bits, internal memory used (bits), data movement (bits))
TABLE3: tuple[tuple[int, int, int, int], ...] = (
    # (input bits, output bits, memory used bits, data moved bits)
    (18816, 200704, 220384, 20544),
    (200704, 200704, 421376, 576),
    (200704, 401408, 824832, 4096),
    (401408, 401408, 1226816, 1152),
    (401408, 200704, 1435712, 16384),
    (200704, 100352, 1536640, 1152),
    (100352, 200704, 1745536, 16384),
    (200704, 200704, 1947392, 2304),
    (200704, 200704, 2156288, 16384),
    (200704, 200704, 2358144, 2304),
    (200704, 200704, 2575232, 32768),
    (200704, 200704, 2777088, 2304),
    (200704, 404544, 3214400, 65536),
    (404544, 401408, 3618112, 4608),
    (401408, 401408, 4085056, 131072),
    (401408, 401408, 4488768, 4608),
    (401408, 401408, 4955712, 131072),
    (401408, 401408, 5359424, 4608),
    (401408, 401408, 5826368, 131072),
    (401408, 401408, 6230080, 4608),
    (401408, 401408, 6697024, 131072),
    (401408, 401408, 7100736, 4608),
    (401408, 401408, 7567680, 131072),
    (401408, 401408, 7971392, 4608),
    (401408, 100352, 8137280, 8202816),
    (100352, 100352, 203008, 4608),
    (100352, 100352, 368896, 131072),
)

# Table 4: (data movement time s, compute time s, performance time s)
TABLE4: tuple[tuple[float, float, float], ...] = (
    (0.000002568, 1.35475e-06, 3.92275e-06),
    (0.000000072, 4.51584e-07, 5.23584e-07),
    (0.000000512, 3.21126e-06, 3.72326e-06),
    (0.000000144, 9.03168e-07, 1.04717e-06),
    (0.000002048, 1.60563e-06, 3.65363e-06),
    (0.000000144, 2.25792e-07, 3.69792e-07),
    (0.000002048, 3.21126e-06, 5.25926e-06),
    (0.000000288, 4.51584e-07, 7.39584e-07),
    (0.000002048, 6.42253e-06, 8.47053e-06),
    (0.000000288, 4.51584e-07, 7.39584e-07),
    (0.000004096, 6.42253e-06, 1.05185e-05),
    (0.000000288, 4.51584e-07, 7.39584e-07),
    (0.000008192, 1.28451e-05, 2.10371e-05),
    (0.000000576, 9.03168e-07, 1.47917e-06),
    (0.000016384, 2.56901e-05, 4.20741e-05),
    (0.000000576, 9.03168e-07, 1.47917e-06),
    (0.000016384, 2.56901e-05, 4.20741e-05),
    (0.000000576, 9.03168e-07, 1.47917e-06),
    (0.000016384, 2.56901e-05, 4.20741e-05),
    (0.000000576, 9.03168e-07, 1.47917e-06),
    (0.000016384, 2.56901e-05, 4.20741e-05),
    (0.000000576, 9.03168e-07, 1.47917e-06),
    (0.000016384, 2.56901e-05, 4.20741e-05),
    (0.000000576, 9.03168e-07, 1.47917e-06),
    (0.001025352, 6.42253e-06, 0.001031775),
    (0.000000576, 2.25792e-07, 8.01792e-07),
    (0.000016384, 6.42253e-06, 2.28065e-05),
)
TABLE4_PRINTED_TOTAL_S = 0.001340632

# Rows (1-based) where the paper costed a stride-2 depthwise layer at its input size.
TABLE4_INPUT_SIZE_ROWS = (4, 24)
TABLE3_FIRST_FLUSH_ROW = 25


def _sig(x: float, digits: int = 4) -> str:
    return f"{x:.{digits - 1}e}"


def compare_compute(matrix_times_s: list[float]) -> list[dict]:
    """Row-by-row comparison of perfsim's matrix time with Table 4's compute column.

    ``matrix_times_s``: perfsim's t_matrix_s of the 27 conv layers, in order.
    Each row says whether the two agree to 4 significant figures and, where they
    do not, why (the known input-size rows) or that it is unexplained.
    """
    if len(matrix_times_s) != len(TABLE4):
        raise ValueError(f"expected {len(TABLE4)} conv layers, got {len(matrix_times_s)}")
    out = []
    for i, (ours, (_, paper, _)) in enumerate(zip(matrix_times_s, TABLE4), start=1):
        match = _sig(ours) == _sig(paper)
        if match:
            why = ""
        elif i in TABLE4_INPUT_SIZE_ROWS and _sig(4 * ours) == _sig(paper):
            why = "paper costed this stride-2 depthwise layer at its input size (4x the true MACs)"
        else:
            why = "unexplained"
        out.append({"row": i, "perfsim_s": ours, "paper_s": paper, "match": match, "note": why})
    return out
