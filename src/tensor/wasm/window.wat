  ;; backflow's WebAssembly kernels over windows of NHWC images: convolutions without an im2col
  ;; matrix, and pooling. A fragment of the module body: build.ts splices it into kernels.wat at its
  ;; `;; @include window.wat` line, so it shares that module's memory, helpers and conventions.

  ;; ---------------------------------------------------------------------------------------------
  ;; Note [implicit patches]
  ;; conv2d is im2col then a matmul (Note [conv2d layout], src/ops/conv2d.ts), and so is the filter's
  ;; gradient. These kernels compute those matmuls without writing the patch matrix: row r of it, the
  ;; window of output pixel r, is read straight from the image. In NHWC with dilation 1 along the
  ;; width, one kernel row of a window is a run of KW*C contiguous floats, so a window is KH runs,
  ;; `rowStep` bytes apart, starting at the window's corner (`bases`, one per output pixel, from
  ;; patchBases). Padding is made real first: the image is copied into a zero border (padImage), so
  ;; every tap reads memory and the padded taps read the zeros im2col would have written. The
  ;; patch element of column p is then the same float at the same p, and each output element is the
  ;; same float32 sum in the same order as the packed gemm's (Note [wasm matmul summation order]):
  ;; over p = 0..K-1 increasing from +0 for conv2d, over the pixels increasing for the filter's
  ;; gradient, each product rounded first (or fused by relaxed_madd in the relaxed variant, as in
  ;; the gemm). The results are the bits of im2col followed by the wasm matmul.
  ;; ---------------------------------------------------------------------------------------------

  ;; The corner of each output pixel's window, in output order (image, row, column): $start plus
  ;; n*imageStep + i*rowStep + j*colStep (bytes), as i32 at $out; then copies of the last one up
  ;; to $count entries (the padding rows of the last 4-pixel tile read a real window).
  (func (export "patchBases") (param $out i32) (param $start i32) (param $m i32) (param $count i32)
                              (param $oh i32) (param $ow i32)
                              (param $imageStep i32) (param $rowStep i32) (param $colStep i32)
    (local $i i32) (local $row i32) (local $at i32) (local $rowEnd i32) (local $end i32)
    (local.set $end (i32.add (local.get $out) (i32.shl (local.get $m) (i32.const 2))))
    (loop $images
      (local.set $row (local.get $start))
      (local.set $i (i32.const 0))
      (loop $rows
        (local.set $at (local.get $row))
        (local.set $rowEnd (i32.add (local.get $out) (i32.shl (local.get $ow) (i32.const 2))))
        (loop $cols
          (i32.store (local.get $out) (local.get $at))
          (local.set $at (i32.add (local.get $at) (local.get $colStep)))
          (br_if $cols (i32.lt_u (local.tee $out (i32.add (local.get $out) (i32.const 4))) (local.get $rowEnd))))
        (local.set $row (i32.add (local.get $row) (local.get $rowStep)))
        (br_if $rows (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $oh))))
      (local.set $start (i32.add (local.get $start) (local.get $imageStep)))
      (br_if $images (i32.lt_u (local.get $out) (local.get $end))))
    (local.set $at (i32.load (i32.sub (local.get $out) (i32.const 4))))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.sub (local.get $count) (local.get $m)) (i32.const 2))))
    (block $padded
      (loop $pad
        (br_if $padded (i32.ge_u (local.get $out) (local.get $end)))
        (i32.store (local.get $out) (local.get $at))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (br $pad))))

  ;; `rows` rows of `bytes` bytes, $src contiguous, copied to $dst rows `dstStep` bytes apart; the
  ;; bytes between the rows are left as they are. Exact: vectors, then the tail a float at a time.
  (func $copyRows (param $src i32) (param $dst i32) (param $rows i32) (param $bytes i32) (param $dstStep i32)
    (local $r i32) (local $t i32) (local $v16 i32)
    (local.set $v16 (i32.and (local.get $bytes) (i32.const -16)))
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $t (i32.const 0))
        (block $vectorsDone
          (loop $vectors
            (br_if $vectorsDone (i32.ge_u (local.get $t) (local.get $v16)))
            (v128.store (i32.add (local.get $dst) (local.get $t)) (v128.load (i32.add (local.get $src) (local.get $t))))
            (local.set $t (i32.add (local.get $t) (i32.const 16)))
            (br $vectors)))
        (block $tailDone
          (loop $tail
            (br_if $tailDone (i32.ge_u (local.get $t) (local.get $bytes)))
            (f32.store (i32.add (local.get $dst) (local.get $t)) (f32.load (i32.add (local.get $src) (local.get $t))))
            (local.set $t (i32.add (local.get $t) (i32.const 4)))
            (br $tail)))
        (local.set $src (i32.add (local.get $src) (local.get $bytes)))
        (local.set $dst (i32.add (local.get $dst) (local.get $dstStep)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop))))

  ;; An image [n, h, w, c] at $src copied into the middle of [n, h + 2ph, w + 2pw, c] at $dst, the
  ;; border +0.
  (func (export "padImage") (param $src i32) (param $dst i32) (param $n i32) (param $h i32) (param $w i32)
                            (param $c i32) (param $ph i32) (param $pw i32)
    (local $rowBytes i32) (local $padRowBytes i32) (local $image i32) (local $imageBytes i32)
    (local.set $rowBytes (i32.shl (i32.mul (local.get $w) (local.get $c)) (i32.const 2)))
    (local.set $padRowBytes (i32.shl (i32.mul (i32.add (local.get $w) (i32.shl (local.get $pw) (i32.const 1)))
                                              (local.get $c)) (i32.const 2)))
    (local.set $imageBytes (i32.mul (local.get $padRowBytes) (i32.add (local.get $h) (i32.shl (local.get $ph) (i32.const 1)))))
    (memory.fill (local.get $dst) (i32.const 0) (i32.mul (local.get $imageBytes) (local.get $n)))
    (local.set $dst (i32.add (local.get $dst)
      (i32.add (i32.mul (local.get $ph) (local.get $padRowBytes)) (i32.shl (i32.mul (local.get $pw) (local.get $c)) (i32.const 2)))))
    (block $done
      (loop $images
        (br_if $done (i32.ge_u (local.get $image) (local.get $n)))
        (call $copyRows (local.get $src) (local.get $dst) (local.get $h) (local.get $rowBytes) (local.get $padRowBytes))
        (local.set $src (i32.add (local.get $src) (i32.mul (local.get $rowBytes) (local.get $h))))
        (local.set $dst (i32.add (local.get $dst) (local.get $imageBytes)))
        (local.set $image (i32.add (local.get $image) (i32.const 1)))
        (br $images))))

  ;; C[4 x 8 panels] (rows $ldc bytes apart, at $c) = the patches of four output pixels (windows at
  ;; $x0..$x3) times `panels` packed B panels (each K x 8, the first at $pb), K = $kh runs of $run
  ;; bytes, $rowStep bytes apart in the image. Panel after panel: C moves by $cStep bytes and B by
  ;; $pbStep bytes past the end of the panel just done (0 for the next one, -2 panels for the one
  ;; before). The accumulators start at +0; the multiply-adds are the gemm micro-kernel's. One call
  ;; for all the panels, as V8 does not inline wasm calls.
  (func $patchKernel4x8 (param $x0 i32) (param $x1 i32) (param $x2 i32) (param $x3 i32) (param $pb i32)
                        (param $c i32) (param $ldc i32) (param $kh i32) (param $run i32) (param $rowStep i32)
                        (param $panels i32) (param $cStep i32) (param $pbStep i32)
    (local $t i32) (local $p i32) (local $y0 i32) (local $y1 i32) (local $y2 i32) (local $y3 i32) (local $d i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (loop $panelsLoop
      (local.set $y0 (local.get $x0))
      (local.set $y1 (local.get $x1))
      (local.set $y2 (local.get $x2))
      (local.set $y3 (local.get $x3))
      (local.set $c00 (v128.const i32x4 0 0 0 0))
      (local.set $c01 (v128.const i32x4 0 0 0 0))
      (local.set $c10 (v128.const i32x4 0 0 0 0))
      (local.set $c11 (v128.const i32x4 0 0 0 0))
      (local.set $c20 (v128.const i32x4 0 0 0 0))
      (local.set $c21 (v128.const i32x4 0 0 0 0))
      (local.set $c30 (v128.const i32x4 0 0 0 0))
      (local.set $c31 (v128.const i32x4 0 0 0 0))
      (local.set $p (i32.const 0))
      (loop $rows
        (local.set $t (i32.const 0))
        (loop $steps
          (local.set $b0 (v128.load offset=0 (local.get $pb)))
          (local.set $b1 (v128.load offset=16 (local.get $pb)))
          (local.set $a (v128.load32_splat (i32.add (local.get $y0) (local.get $t))))
          (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (v128.load32_splat (i32.add (local.get $y1) (local.get $t))))
          (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (v128.load32_splat (i32.add (local.get $y2) (local.get $t))))
          (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (v128.load32_splat (i32.add (local.get $y3) (local.get $t))))
          (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
          (br_if $steps (i32.lt_u (local.tee $t (i32.add (local.get $t) (i32.const 4))) (local.get $run))))
        (local.set $y0 (i32.add (local.get $y0) (local.get $rowStep)))
        (local.set $y1 (i32.add (local.get $y1) (local.get $rowStep)))
        (local.set $y2 (i32.add (local.get $y2) (local.get $rowStep)))
        (local.set $y3 (i32.add (local.get $y3) (local.get $rowStep)))
        (br_if $rows (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 1))) (local.get $kh))))
      (local.set $d (local.get $c))
      (v128.store offset=0 (local.get $d) (local.get $c00))
      (v128.store offset=16 (local.get $d) (local.get $c01))
      (local.set $d (i32.add (local.get $d) (local.get $ldc)))
      (v128.store offset=0 (local.get $d) (local.get $c10))
      (v128.store offset=16 (local.get $d) (local.get $c11))
      (local.set $d (i32.add (local.get $d) (local.get $ldc)))
      (v128.store offset=0 (local.get $d) (local.get $c20))
      (v128.store offset=16 (local.get $d) (local.get $c21))
      (local.set $d (i32.add (local.get $d) (local.get $ldc)))
      (v128.store offset=0 (local.get $d) (local.get $c30))
      (v128.store offset=16 (local.get $d) (local.get $c31))
      (local.set $c (i32.add (local.get $c) (local.get $cStep)))
      (local.set $pb (i32.add (local.get $pb) (local.get $pbStep)))
      (br_if $panelsLoop (local.tee $panels (i32.sub (local.get $panels) (i32.const 1))))))

  ;; conv2d: C[m, n] (at $c, rows n floats apart) = patches [m, K] times W [K, n] (at $w, row-major),
  ;; K = kh * run / 4, the windows at $bases (m rounded up to 4 entries). W is packed into panels of
  ;; 8 columns at $pb first. Each 8-column block of a row is stored whole, so a row's padding
  ;; columns spill into the next row's first ones: the blocks go from the last to the first, and
  ;; rows in increasing order, so every spill is overwritten by the true value later. The rows past
  ;; m (up to 3) and the last spill (up to 7 floats) land past the output: the caller leaves room.
  (func (export "conv2d") (param $bases i32) (param $m i32) (param $w i32) (param $n i32) (param $pb i32)
                          (param $c i32) (param $kh i32) (param $run i32) (param $rowStep i32)
    (local $k i32) (local $ldc i32) (local $panelBytes i32) (local $end i32) (local $panels i32)
    (local.set $k (i32.mul (local.get $kh) (i32.shr_u (local.get $run) (i32.const 2))))
    (local.set $panels (i32.shr_u (i32.add (local.get $n) (i32.const 7)) (i32.const 3)))
    (local.set $ldc (i32.shl (local.get $n) (i32.const 2)))
    (local.set $panelBytes (i32.shl (local.get $k) (i32.const 5)))
    (call $pack (local.get $w) (i32.const 1) (local.get $n) (local.get $n) (local.get $k) (i32.const 8) (local.get $pb))
    (local.set $end (i32.add (local.get $bases) (i32.shl (local.get $m) (i32.const 2))))
    (block $done
      (loop $tiles
        (br_if $done (i32.ge_u (local.get $bases) (local.get $end)))
        ;; the last panel first (see above)
        (call $patchKernel4x8
          (i32.load offset=0 (local.get $bases)) (i32.load offset=4 (local.get $bases))
          (i32.load offset=8 (local.get $bases)) (i32.load offset=12 (local.get $bases))
          (i32.add (local.get $pb) (i32.mul (i32.sub (local.get $panels) (i32.const 1)) (local.get $panelBytes)))
          (i32.add (local.get $c) (i32.shl (i32.sub (local.get $panels) (i32.const 1)) (i32.const 5)))
          (local.get $ldc) (local.get $kh) (local.get $run) (local.get $rowStep)
          (local.get $panels) (i32.const -32) (i32.mul (local.get $panelBytes) (i32.const -2)))
        (local.set $bases (i32.add (local.get $bases) (i32.const 16)))
        (local.set $c (i32.add (local.get $c) (i32.shl (local.get $ldc) (i32.const 2))))
        (br $tiles))))

  ;; C[4 x 8] (rows $ldc bytes apart, at $c) += the sum over `count` output pixels (windows at
  ;; $bases) of their patch elements at byte offsets $o0..$o3 times their 8 floats of G at $g
  ;; (rows $gStep bytes apart): four rows of the filter's gradient patches^T G, over some pixels.
  (func $patchGradKernel4x8 (param $bases i32) (param $count i32) (param $o0 i32) (param $o1 i32) (param $o2 i32)
                            (param $o3 i32) (param $g i32) (param $gStep i32) (param $c i32) (param $ldc i32)
    (local $x i32) (local $end i32) (local $c1 i32) (local $c2 i32) (local $c3 i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local.set $c1 (i32.add (local.get $c) (local.get $ldc)))
    (local.set $c2 (i32.add (local.get $c1) (local.get $ldc)))
    (local.set $c3 (i32.add (local.get $c2) (local.get $ldc)))
    (local.set $c00 (v128.load offset=0 (local.get $c)))
    (local.set $c01 (v128.load offset=16 (local.get $c)))
    (local.set $c10 (v128.load offset=0 (local.get $c1)))
    (local.set $c11 (v128.load offset=16 (local.get $c1)))
    (local.set $c20 (v128.load offset=0 (local.get $c2)))
    (local.set $c21 (v128.load offset=16 (local.get $c2)))
    (local.set $c30 (v128.load offset=0 (local.get $c3)))
    (local.set $c31 (v128.load offset=16 (local.get $c3)))
    (local.set $end (i32.add (local.get $bases) (i32.shl (local.get $count) (i32.const 2))))
    (block $done
      (loop $pixels
        (br_if $done (i32.ge_u (local.get $bases) (local.get $end)))
        (local.set $x (i32.load (local.get $bases)))
        (local.set $b0 (v128.load offset=0 (local.get $g)))
        (local.set $b1 (v128.load offset=16 (local.get $g)))
        (local.set $a (v128.load32_splat (i32.add (local.get $x) (local.get $o0))))
        (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat (i32.add (local.get $x) (local.get $o1))))
        (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat (i32.add (local.get $x) (local.get $o2))))
        (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat (i32.add (local.get $x) (local.get $o3))))
        (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $bases (i32.add (local.get $bases) (i32.const 4)))
        (local.set $g (i32.add (local.get $g) (local.get $gStep)))
        (br $pixels)))
    (v128.store offset=0 (local.get $c) (local.get $c00))
    (v128.store offset=16 (local.get $c) (local.get $c01))
    (v128.store offset=0 (local.get $c1) (local.get $c10))
    (v128.store offset=16 (local.get $c1) (local.get $c11))
    (v128.store offset=0 (local.get $c2) (local.get $c20))
    (v128.store offset=16 (local.get $c2) (local.get $c21))
    (v128.store offset=0 (local.get $c3) (local.get $c30))
    (v128.store offset=16 (local.get $c3) (local.get $c31)))

  ;; conv2dWeightGrad: C[kPad, nPad] (at $c, zeroed here) = patches^T [K, m] times G [m, n] (at $g),
  ;; the windows at $bases, patch column p at byte offset $offsets[p] of its window ($offsets holds
  ;; K rounded up to 4 entries; the padding rows repeat a real offset). The pixels go in chunks of
  ;; $chunk (a cache's worth: one image), every 4 x 8 tile of C summing a chunk before the next one,
  ;; its partial sums kept in C in float32: each element still sums its products in pixel order.
  ;; G's rows are read 8 floats at a time past their n: the caller leaves room after G.
  (func (export "conv2dWeightGrad") (param $bases i32) (param $m i32) (param $chunk i32) (param $offsets i32)
                                    (param $k i32) (param $g i32) (param $n i32) (param $c i32)
    (local $ldc i32) (local $kPad i32) (local $r0 i32) (local $count i32) (local $i i32) (local $q i32)
    (local $o i32) (local $gRows i32)
    (local.set $kPad (i32.and (i32.add (local.get $k) (i32.const 3)) (i32.const -4)))
    (local.set $ldc (i32.shl (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8)) (i32.const 2)))
    (memory.fill (local.get $c) (i32.const 0) (i32.mul (local.get $kPad) (local.get $ldc)))
    (block $done
      (loop $chunks
        (br_if $done (i32.ge_u (local.get $r0) (local.get $m)))
        (local.set $count (select (local.get $chunk) (i32.sub (local.get $m) (local.get $r0))
                                  (i32.lt_u (local.get $chunk) (i32.sub (local.get $m) (local.get $r0)))))
        (local.set $gRows (i32.add (local.get $g) (i32.shl (i32.mul (local.get $r0) (local.get $n)) (i32.const 2))))
        (local.set $i (i32.const 0))
        (loop $rowTiles
          (local.set $o (i32.add (local.get $offsets) (i32.shl (local.get $i) (i32.const 2))))
          (local.set $q (i32.const 0))
          (loop $panels
            (call $patchGradKernel4x8
              (i32.add (local.get $bases) (i32.shl (local.get $r0) (i32.const 2))) (local.get $count)
              (i32.load offset=0 (local.get $o)) (i32.load offset=4 (local.get $o))
              (i32.load offset=8 (local.get $o)) (i32.load offset=12 (local.get $o))
              (i32.add (local.get $gRows) (i32.shl (local.get $q) (i32.const 2)))
              (i32.shl (local.get $n) (i32.const 2))
              (i32.add (local.get $c) (i32.add (i32.mul (local.get $i) (local.get $ldc)) (i32.shl (local.get $q) (i32.const 2))))
              (local.get $ldc))
            (br_if $panels (i32.lt_u (local.tee $q (i32.add (local.get $q) (i32.const 8))) (local.get $n))))
          (br_if $rowTiles (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 4))) (local.get $kPad))))
        (local.set $r0 (i32.add (local.get $r0) (local.get $count)))
        (br $chunks))))

  ;; `rows` rows of patch gradients (float32, $ldc bytes apart at $src) added into the float64 image
  ;; in order, row r at the window corner bases[r] (bytes): each is `kh` kernel rows of `run`
  ;; floats, `rowStep` bytes apart in the image. Four floats a step, then two, then one.
  (func $addPatches (param $src i32) (param $ldc i32) (param $bases i32) (param $rows i32) (param $kh i32)
                    (param $run i32) (param $rowStep i32)
    (local $p i32) (local $t i32) (local $s i32) (local $d i32) (local $dst i32) (local $run4 i32) (local $v v128)
    (local.set $run4 (i32.and (local.get $run) (i32.const -4)))
    (loop $patches
      (local.set $s (local.get $src))
      (local.set $dst (i32.load (local.get $bases)))
      (local.set $p (i32.const 0))
      (loop $kernelRows
        (local.set $d (local.get $dst))
        (local.set $t (i32.const 0))
        (block $vectorsDone
          (loop $vectors
            (br_if $vectorsDone (i32.ge_u (local.get $t) (local.get $run4)))
            (local.set $v (v128.load (local.get $s)))
            (v128.store offset=0 (local.get $d)
              (f64x2.add (v128.load offset=0 (local.get $d)) (f64x2.promote_low_f32x4 (local.get $v))))
            (v128.store offset=16 (local.get $d)
              (f64x2.add (v128.load offset=16 (local.get $d)) (f64x2.promote_low_f32x4
                (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v)))))
            (local.set $s (i32.add (local.get $s) (i32.const 16)))
            (local.set $d (i32.add (local.get $d) (i32.const 32)))
            (local.set $t (i32.add (local.get $t) (i32.const 4)))
            (br $vectors)))
        (if (i32.ge_u (i32.sub (local.get $run) (local.get $t)) (i32.const 2))
          (then
            (v128.store (local.get $d)
              (f64x2.add (v128.load (local.get $d)) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $s)))))
            (local.set $s (i32.add (local.get $s) (i32.const 8)))
            (local.set $d (i32.add (local.get $d) (i32.const 16)))
            (local.set $t (i32.add (local.get $t) (i32.const 2)))))
        (if (i32.lt_u (local.get $t) (local.get $run))
          (then
            (f64.store (local.get $d) (f64.add (f64.load (local.get $d)) (f64.promote_f32 (f32.load (local.get $s)))))
            (local.set $s (i32.add (local.get $s) (i32.const 4)))))
        (local.set $dst (i32.add (local.get $dst) (local.get $rowStep)))
        (br_if $kernelRows (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 1))) (local.get $kh))))
      (local.set $src (i32.add (local.get $src) (local.get $ldc)))
      (local.set $bases (i32.add (local.get $bases) (i32.const 4)))
      (br_if $patches (local.tee $rows (i32.sub (local.get $rows) (i32.const 1))))))

  ;; conv2dInputGrad: col2im(G W^T) in float64 at $acc (the padded image [N, Hp, Wp, C], zeroed
  ;; here, $accBytes long), G [m, f] at $g, W [k, f] at $w (packed transposed into 8-column panels
  ;; at $pb). Four rows of G W^T at a time go through the micro-kernel into $tile (4 x k rounded up
  ;; to 8), each the float32 sum over f in order, the gemm's bits; then each row is added into the
  ;; image in pixel order, at the window corners $bases (float64 bytes): the order and float64 sums
  ;; of col2im in TypeScript, so the same bits once the caller rounds the image (unpadImage).
  (func (export "conv2dInputGrad") (param $g i32) (param $m i32) (param $f i32) (param $w i32) (param $k i32)
                                   (param $pb i32) (param $tile i32) (param $bases i32) (param $acc i32)
                                   (param $accBytes i32) (param $kh i32) (param $run i32) (param $rowStep i32)
    (local $r i32) (local $i i32) (local $ldc i32) (local $kPad i32) (local $gRow i32)
    (local $g1 i32) (local $g2 i32) (local $g3 i32)
    (local.set $kPad (i32.and (i32.add (local.get $k) (i32.const 7)) (i32.const -8)))
    (local.set $ldc (i32.shl (local.get $kPad) (i32.const 2)))
    (local.set $gRow (i32.shl (local.get $f) (i32.const 2)))
    (call $pack (local.get $w) (local.get $f) (i32.const 1) (local.get $k) (local.get $f) (i32.const 8) (local.get $pb))
    (memory.fill (local.get $acc) (i32.const 0) (local.get $accBytes))
    (block $done
      (loop $tiles
        (br_if $done (i32.ge_u (local.get $r) (local.get $m)))
        ;; rows past m read row r again; they are computed and never added
        (local.set $g1 (select (i32.add (local.get $g) (local.get $gRow)) (local.get $g)
                               (i32.lt_u (i32.add (local.get $r) (i32.const 1)) (local.get $m))))
        (local.set $g2 (select (i32.add (local.get $g1) (local.get $gRow)) (local.get $g)
                               (i32.lt_u (i32.add (local.get $r) (i32.const 2)) (local.get $m))))
        (local.set $g3 (select (i32.add (local.get $g2) (local.get $gRow)) (local.get $g)
                               (i32.lt_u (i32.add (local.get $r) (i32.const 3)) (local.get $m))))
        (call $patchKernel4x8 (local.get $g) (local.get $g1) (local.get $g2) (local.get $g3) (local.get $pb)
          (local.get $tile) (local.get $ldc) (i32.const 1) (local.get $gRow) (i32.const 0)
          (i32.shr_u (local.get $kPad) (i32.const 3)) (i32.const 32) (i32.const 0))
        (local.set $i (select (i32.const 4) (i32.sub (local.get $m) (local.get $r))
                              (i32.lt_u (i32.const 4) (i32.sub (local.get $m) (local.get $r)))))
        (call $addPatches (local.get $tile) (local.get $ldc) (local.get $bases) (local.get $i)
                          (local.get $kh) (local.get $run) (local.get $rowStep))
        (local.set $bases (i32.add (local.get $bases) (i32.const 16)))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (local.set $g (i32.add (local.get $g3) (local.get $gRow)))
        (br $tiles))))

  ;; The middle [n, h, w, c] of a float64 image [n, h + 2ph, w + 2pw, c] at $src, rounded to float32
  ;; at $dst (contiguous). Whole vectors: a row's last one spills into the next row, rewritten
  ;; after, and the last row's up to 12 bytes past the output.
  (func (export "unpadImage") (param $src i32) (param $dst i32) (param $n i32) (param $h i32) (param $w i32)
                              (param $c i32) (param $ph i32) (param $pw i32)
    (local $row i32) (local $rows i32) (local $rowFloats i32) (local $padRowBytes i32) (local $s i32) (local $t i32)
    (local $y i32)
    (local.set $rowFloats (i32.mul (local.get $w) (local.get $c)))
    (local.set $padRowBytes (i32.shl (i32.mul (i32.add (local.get $w) (i32.shl (local.get $pw) (i32.const 1)))
                                              (local.get $c)) (i32.const 3)))
    (local.set $rows (i32.mul (local.get $n) (local.get $h)))
    (local.set $src (i32.add (local.get $src)
      (i32.add (i32.mul (local.get $ph) (local.get $padRowBytes)) (i32.shl (i32.mul (local.get $pw) (local.get $c)) (i32.const 3)))))
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $row) (local.get $rows)))
        (local.set $s (local.get $src))
        (local.set $t (i32.const 0))
        (block $rowDone
          (loop $vectors
            (br_if $rowDone (i32.ge_u (local.get $t) (local.get $rowFloats)))
            (v128.store (local.get $dst) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (f32x4.demote_f64x2_zero (v128.load offset=0 (local.get $s)))
              (f32x4.demote_f64x2_zero (v128.load offset=16 (local.get $s)))))
            (local.set $s (i32.add (local.get $s) (i32.const 32)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
            (local.set $t (i32.add (local.get $t) (i32.const 4)))
            (br $vectors)))
        ;; back to the row's true end
        (local.set $dst (i32.sub (local.get $dst) (i32.shl (i32.sub (local.get $t) (local.get $rowFloats)) (i32.const 2))))
        (local.set $src (i32.add (local.get $src) (local.get $padRowBytes)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (if (i32.eq (local.get $y) (local.get $h))
          (then
            (local.set $y (i32.const 0))
            (local.set $src (i32.add (local.get $src) (i32.mul (local.get $padRowBytes) (i32.shl (local.get $ph) (i32.const 1)))))))
        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br $rowsLoop))))

  ;; ---------------------------------------------------------------------------------------------
  ;; Max pooling, four channels at a time. Each window's taps go in window order (kernel row, then
  ;; column), those outside the image skipped, and a tap replaces the maximum when it is greater or
  ;; is the first NaN: the TypeScript rule (src/tensor/window.ts), so the same picks and the same
  ;; bits. The lanes past the last channel compute garbage from the next pixel's channels: the
  ;; forward stores it where the next pixel's values are stored after (or past the output, into the
  ;; caller's slack), the gradient masks it out.
  ;; ---------------------------------------------------------------------------------------------

  ;; The taps [lo, hi) of a window starting at `first` (= o * stride - padding) inside [0, size),
  ;; packed as lo | hi << 16.
  (func $taps (param $first i32) (param $kernel i32) (param $size i32) (result i32)
    (local $lo i32) (local $hi i32)
    (local.set $lo (select (i32.sub (i32.const 0) (local.get $first)) (i32.const 0) (i32.lt_s (local.get $first) (i32.const 0))))
    (local.set $hi (i32.sub (local.get $size) (local.get $first)))
    (local.set $hi (select (local.get $kernel) (local.get $hi) (i32.lt_s (local.get $kernel) (local.get $hi))))
    (i32.or (local.get $lo) (i32.shl (local.get $hi) (i32.const 16))))

  ;; o [n, oh, ow, c] = the maximum of each window of x [n, h, w, c].
  (func (export "maxPool") (param $x i32) (param $o i32) (param $n i32) (param $h i32) (param $w i32) (param $c i32)
                           (param $oh i32) (param $ow i32) (param $kh i32) (param $kw i32) (param $sh i32)
                           (param $sw i32) (param $ph i32) (param $pw i32)
    (local $b i32) (local $i i32) (local $j i32) (local $rows i32) (local $cols i32) (local $c0 i32)
    (local $pixel i32) (local $row i32) (local $at i32) (local $p i32) (local $q i32) (local $first i32)
    (local $m v128) (local $v v128)
    (local.set $pixel (i32.shl (local.get $c) (i32.const 2)))
    (local.set $row (i32.mul (local.get $pixel) (local.get $w)))
    (loop $images
      (local.set $i (i32.const 0))
      (loop $outRows
        (local.set $rows (call $taps (i32.sub (i32.mul (local.get $i) (local.get $sh)) (local.get $ph))
                                     (local.get $kh) (local.get $h)))
        (local.set $j (i32.const 0))
        (loop $outCols
          (local.set $cols (call $taps (i32.sub (i32.mul (local.get $j) (local.get $sw)) (local.get $pw))
                                       (local.get $kw) (local.get $w)))
          ;; the window's top-left tap (kernel row 0, column 0), inside the image or not
          (local.set $first (i32.add (local.get $x) (i32.add
            (i32.mul (i32.sub (i32.add (i32.mul (local.get $b) (local.get $h)) (i32.mul (local.get $i) (local.get $sh)))
                              (local.get $ph)) (local.get $row))
            (i32.mul (i32.sub (i32.mul (local.get $j) (local.get $sw)) (local.get $pw)) (local.get $pixel)))))
          (local.set $c0 (i32.const 0))
          (loop $blocks
            (local.set $at (i32.add (i32.add (local.get $first) (i32.shl (local.get $c0) (i32.const 2)))
              (i32.add (i32.mul (i32.and (local.get $rows) (i32.const 0xffff)) (local.get $row))
                       (i32.mul (i32.and (local.get $cols) (i32.const 0xffff)) (local.get $pixel)))))
            (local.set $m (v128.load (local.get $at)))
            (local.set $p (i32.and (local.get $rows) (i32.const 0xffff)))
            (loop $kernelRows
              (local.set $q (i32.and (local.get $cols) (i32.const 0xffff)))
              (loop $kernelCols
                (local.set $v (v128.load (local.get $at)))
                (local.set $m (v128.bitselect (local.get $v) (local.get $m)
                  (v128.or (f32x4.gt (local.get $v) (local.get $m))
                           (v128.and (f32x4.ne (local.get $v) (local.get $v)) (f32x4.eq (local.get $m) (local.get $m))))))
                (local.set $at (i32.add (local.get $at) (local.get $pixel)))
                (br_if $kernelCols (i32.lt_u (local.tee $q (i32.add (local.get $q) (i32.const 1)))
                                             (i32.shr_u (local.get $cols) (i32.const 16)))))
              (local.set $at (i32.add (local.get $at) (i32.sub (local.get $row)
                (i32.mul (i32.sub (i32.shr_u (local.get $cols) (i32.const 16)) (i32.and (local.get $cols) (i32.const 0xffff)))
                         (local.get $pixel)))))
              (br_if $kernelRows (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 1)))
                                           (i32.shr_u (local.get $rows) (i32.const 16)))))
            (v128.store (i32.add (local.get $o) (i32.shl (local.get $c0) (i32.const 2))) (local.get $m))
            (br_if $blocks (i32.lt_u (local.tee $c0 (i32.add (local.get $c0) (i32.const 4))) (local.get $c))))
          (local.set $o (i32.add (local.get $o) (local.get $pixel)))
          (br_if $outCols (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (local.get $ow))))
        (br_if $outRows (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $oh))))
      (br_if $images (i32.lt_u (local.tee $b (i32.add (local.get $b) (i32.const 1))) (local.get $n)))))

  ;; o [n, h, w, c] ($oBytes long) = g [n, oh, ow, c] at the maximum of each window of x, for
  ;; windows that do not overlap (stride >= kernel): each pixel then takes at most one value,
  ;; float32(0 + g) (+0 for -0) as TypeScript's float64 sum rounds it, the window's other pixels +0.
  ;; Pixels in no window stay +0: o is zeroed first unless the windows tile the image exactly. The
  ;; lanes past the last channel store back what they loaded.
  (func (export "maxPoolGrad") (param $x i32) (param $g i32) (param $o i32) (param $oBytes i32) (param $n i32)
                               (param $h i32) (param $w i32) (param $c i32) (param $oh i32) (param $ow i32)
                               (param $kh i32) (param $kw i32) (param $sh i32) (param $sw i32) (param $ph i32)
                               (param $pw i32)
    (local $b i32) (local $i i32) (local $j i32) (local $rows i32) (local $cols i32) (local $c0 i32)
    (local $pixel i32) (local $row i32) (local $at i32) (local $p i32) (local $q i32) (local $first i32)
    (local $t i32) (local $start i32) (local $back i32)
    (local $m v128) (local $v v128) (local $best v128) (local $gv v128) (local $valid v128) (local $sel v128)
    (if (i32.eqz (i32.and (i32.and (i32.and (i32.eq (local.get $sh) (local.get $kh)) (i32.eq (local.get $sw) (local.get $kw)))
                                   (i32.eqz (i32.or (local.get $ph) (local.get $pw))))
                          (i32.and (i32.eq (local.get $h) (i32.mul (local.get $oh) (local.get $kh)))
                                   (i32.eq (local.get $w) (i32.mul (local.get $ow) (local.get $kw))))))
      (then (memory.fill (local.get $o) (i32.const 0) (local.get $oBytes))))
    (local.set $pixel (i32.shl (local.get $c) (i32.const 2)))
    (local.set $row (i32.mul (local.get $pixel) (local.get $w)))
    (loop $images
      (local.set $i (i32.const 0))
      (loop $outRows
        (local.set $rows (call $taps (i32.sub (i32.mul (local.get $i) (local.get $sh)) (local.get $ph))
                                     (local.get $kh) (local.get $h)))
        (local.set $j (i32.const 0))
        (loop $outCols
          (local.set $cols (call $taps (i32.sub (i32.mul (local.get $j) (local.get $sw)) (local.get $pw))
                                       (local.get $kw) (local.get $w)))
          (local.set $back (i32.sub (local.get $row)
            (i32.mul (i32.sub (i32.shr_u (local.get $cols) (i32.const 16)) (i32.and (local.get $cols) (i32.const 0xffff)))
                     (local.get $pixel))))
          (local.set $first (i32.add
            (i32.mul (i32.sub (i32.add (i32.mul (local.get $b) (local.get $h)) (i32.mul (local.get $i) (local.get $sh)))
                              (local.get $ph)) (local.get $row))
            (i32.mul (i32.sub (i32.mul (local.get $j) (local.get $sw)) (local.get $pw)) (local.get $pixel))))
          (local.set $c0 (i32.const 0))
          (loop $blocks
            ;; byte offset (in x and in o) of the first tap inside the image, this block's channels
            (local.set $start (i32.add (i32.add (local.get $first) (i32.shl (local.get $c0) (i32.const 2)))
              (i32.add (i32.mul (i32.and (local.get $rows) (i32.const 0xffff)) (local.get $row))
                       (i32.mul (i32.and (local.get $cols) (i32.const 0xffff)) (local.get $pixel)))))
            ;; the maximum and the index of its tap, per lane
            (local.set $at (local.get $start))
            (local.set $m (v128.load (i32.add (local.get $x) (local.get $at))))
            (local.set $best (v128.const i32x4 0 0 0 0))
            (local.set $t (i32.const 0))
            (local.set $p (i32.and (local.get $rows) (i32.const 0xffff)))
            (loop $kernelRows
              (local.set $q (i32.and (local.get $cols) (i32.const 0xffff)))
              (loop $kernelCols
                (local.set $v (v128.load (i32.add (local.get $x) (local.get $at))))
                (local.set $sel (v128.or (f32x4.gt (local.get $v) (local.get $m))
                  (v128.and (f32x4.ne (local.get $v) (local.get $v)) (f32x4.eq (local.get $m) (local.get $m)))))
                (local.set $m (v128.bitselect (local.get $v) (local.get $m) (local.get $sel)))
                (local.set $best (v128.bitselect (i32x4.splat (local.get $t)) (local.get $best) (local.get $sel)))
                (local.set $t (i32.add (local.get $t) (i32.const 1)))
                (local.set $at (i32.add (local.get $at) (local.get $pixel)))
                (br_if $kernelCols (i32.lt_u (local.tee $q (i32.add (local.get $q) (i32.const 1)))
                                             (i32.shr_u (local.get $cols) (i32.const 16)))))
              (local.set $at (i32.add (local.get $at) (local.get $back)))
              (br_if $kernelRows (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 1)))
                                           (i32.shr_u (local.get $rows) (i32.const 16)))))
            ;; g (+0 added, as the float64 sum from +0 does) into the lanes that picked each tap
            (local.set $gv (f32x4.add (v128.load (i32.add (local.get $g) (i32.shl (local.get $c0) (i32.const 2))))
                                      (v128.const f32x4 0 0 0 0)))
            (local.set $valid (i32x4.lt_s (i32x4.add (v128.const i32x4 0 1 2 3) (i32x4.splat (local.get $c0)))
                                          (i32x4.splat (local.get $c))))
            (local.set $at (i32.add (local.get $o) (local.get $start)))
            (local.set $t (i32.const 0))
            (local.set $p (i32.and (local.get $rows) (i32.const 0xffff)))
            (loop $kernelRows
              (local.set $q (i32.and (local.get $cols) (i32.const 0xffff)))
              (loop $kernelCols
                (local.set $sel (i32x4.eq (local.get $best) (i32x4.splat (local.get $t))))
                (v128.store (local.get $at) (v128.bitselect (v128.and (local.get $gv) (local.get $sel))
                                                            (v128.load (local.get $at)) (local.get $valid)))
                (local.set $t (i32.add (local.get $t) (i32.const 1)))
                (local.set $at (i32.add (local.get $at) (local.get $pixel)))
                (br_if $kernelCols (i32.lt_u (local.tee $q (i32.add (local.get $q) (i32.const 1)))
                                             (i32.shr_u (local.get $cols) (i32.const 16)))))
              (local.set $at (i32.add (local.get $at) (local.get $back)))
              (br_if $kernelRows (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 1)))
                                           (i32.shr_u (local.get $rows) (i32.const 16)))))
            (br_if $blocks (i32.lt_u (local.tee $c0 (i32.add (local.get $c0) (i32.const 4))) (local.get $c))))
          (local.set $g (i32.add (local.get $g) (local.get $pixel)))
          (br_if $outCols (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (local.get $ow))))
        (br_if $outRows (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $oh))))
      (br_if $images (i32.lt_u (local.tee $b (i32.add (local.get $b) (i32.const 1))) (local.get $n)))))

  ;; The common pool written out: 2x2 windows, stride 2, no padding. The same taps in the same
  ;; order, so the same values as maxPool and maxPoolGrad; no tap loops, no tap ranges.
  (func (export "maxPool2x2") (param $x i32) (param $o i32) (param $n i32) (param $h i32) (param $w i32) (param $c i32)
                              (param $oh i32) (param $ow i32)
    (local $pixel i32) (local $row i32) (local $image i32) (local $b i32) (local $i i32) (local $j i32)
    (local $p0 i32) (local $c0 i32) (local $a i32) (local $m v128) (local $v v128)
    (local.set $pixel (i32.shl (local.get $c) (i32.const 2)))
    (local.set $row (i32.mul (local.get $pixel) (local.get $w)))
    (local.set $image (i32.mul (local.get $row) (local.get $h)))
    (loop $images
      (local.set $i (i32.const 0))
      (loop $outRows
        (local.set $p0 (i32.add (local.get $x)
          (i32.add (i32.mul (local.get $b) (local.get $image)) (i32.mul (i32.shl (local.get $i) (i32.const 1)) (local.get $row)))))
        (local.set $j (i32.const 0))
        (loop $outCols
          (local.set $c0 (i32.const 0))
          (loop $blocks
            (local.set $a (i32.add (local.get $p0) (local.get $c0)))
            (local.set $m (v128.load (local.get $a)))
            (local.set $v (v128.load (i32.add (local.get $a) (local.get $pixel))))
            (local.set $m (v128.bitselect (local.get $v) (local.get $m)
              (v128.or (f32x4.gt (local.get $v) (local.get $m))
                       (v128.and (f32x4.ne (local.get $v) (local.get $v)) (f32x4.eq (local.get $m) (local.get $m))))))
            (local.set $a (i32.add (local.get $a) (local.get $row)))
            (local.set $v (v128.load (local.get $a)))
            (local.set $m (v128.bitselect (local.get $v) (local.get $m)
              (v128.or (f32x4.gt (local.get $v) (local.get $m))
                       (v128.and (f32x4.ne (local.get $v) (local.get $v)) (f32x4.eq (local.get $m) (local.get $m))))))
            (local.set $v (v128.load (i32.add (local.get $a) (local.get $pixel))))
            (local.set $m (v128.bitselect (local.get $v) (local.get $m)
              (v128.or (f32x4.gt (local.get $v) (local.get $m))
                       (v128.and (f32x4.ne (local.get $v) (local.get $v)) (f32x4.eq (local.get $m) (local.get $m))))))
            (v128.store (i32.add (local.get $o) (local.get $c0)) (local.get $m))
            (br_if $blocks (i32.lt_u (local.tee $c0 (i32.add (local.get $c0) (i32.const 16))) (local.get $pixel))))
          (local.set $o (i32.add (local.get $o) (local.get $pixel)))
          (local.set $p0 (i32.add (local.get $p0) (i32.shl (local.get $pixel) (i32.const 1))))
          (br_if $outCols (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (local.get $ow))))
        (br_if $outRows (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $oh))))
      (br_if $images (i32.lt_u (local.tee $b (i32.add (local.get $b) (i32.const 1))) (local.get $n)))))

  (func (export "maxPool2x2Grad") (param $x i32) (param $g i32) (param $o i32) (param $oBytes i32) (param $n i32)
                                  (param $h i32) (param $w i32) (param $c i32) (param $oh i32) (param $ow i32)
    (local $pixel i32) (local $row i32) (local $image i32) (local $b i32) (local $i i32) (local $j i32)
    (local $p0 i32) (local $c0 i32) (local $a i32) (local $d i32)
    (local $m v128) (local $v v128) (local $sel v128) (local $best v128) (local $gv v128) (local $valid v128)
    (if (i32.eqz (i32.and (i32.eq (local.get $h) (i32.shl (local.get $oh) (i32.const 1)))
                          (i32.eq (local.get $w) (i32.shl (local.get $ow) (i32.const 1)))))
      (then (memory.fill (local.get $o) (i32.const 0) (local.get $oBytes))))
    (local.set $pixel (i32.shl (local.get $c) (i32.const 2)))
    (local.set $row (i32.mul (local.get $pixel) (local.get $w)))
    (local.set $image (i32.mul (local.get $row) (local.get $h)))
    (loop $images
      (local.set $i (i32.const 0))
      (loop $outRows
        (local.set $p0 (i32.add (i32.mul (local.get $b) (local.get $image))
                                (i32.mul (i32.shl (local.get $i) (i32.const 1)) (local.get $row))))
        (local.set $j (i32.const 0))
        (loop $outCols
          (local.set $c0 (i32.const 0))
          (loop $blocks
            ;; the maximum's tap (0..3) per lane, as in maxPoolGrad
            (local.set $a (i32.add (i32.add (local.get $x) (local.get $p0)) (local.get $c0)))
            (local.set $m (v128.load (local.get $a)))
            (local.set $v (v128.load (i32.add (local.get $a) (local.get $pixel))))
            (local.set $sel (v128.or (f32x4.gt (local.get $v) (local.get $m))
              (v128.and (f32x4.ne (local.get $v) (local.get $v)) (f32x4.eq (local.get $m) (local.get $m)))))
            (local.set $m (v128.bitselect (local.get $v) (local.get $m) (local.get $sel)))
            (local.set $best (v128.and (local.get $sel) (v128.const i32x4 1 1 1 1)))
            (local.set $a (i32.add (local.get $a) (local.get $row)))
            (local.set $v (v128.load (local.get $a)))
            (local.set $sel (v128.or (f32x4.gt (local.get $v) (local.get $m))
              (v128.and (f32x4.ne (local.get $v) (local.get $v)) (f32x4.eq (local.get $m) (local.get $m)))))
            (local.set $m (v128.bitselect (local.get $v) (local.get $m) (local.get $sel)))
            (local.set $best (v128.bitselect (v128.const i32x4 2 2 2 2) (local.get $best) (local.get $sel)))
            (local.set $v (v128.load (i32.add (local.get $a) (local.get $pixel))))
            (local.set $sel (v128.or (f32x4.gt (local.get $v) (local.get $m))
              (v128.and (f32x4.ne (local.get $v) (local.get $v)) (f32x4.eq (local.get $m) (local.get $m)))))
            (local.set $best (v128.bitselect (v128.const i32x4 3 3 3 3) (local.get $best) (local.get $sel)))
            ;; g (+0 added) at each lane's tap, +0 at the others, the lanes past c stored back as loaded
            (local.set $gv (f32x4.add (v128.load (i32.add (local.get $g) (local.get $c0))) (v128.const f32x4 0 0 0 0)))
            (local.set $valid (i32x4.lt_u (i32x4.add (v128.const i32x4 0 4 8 12) (i32x4.splat (local.get $c0)))
                                          (i32x4.splat (local.get $pixel))))
            (local.set $d (i32.add (i32.add (local.get $o) (local.get $p0)) (local.get $c0)))
            (v128.store (local.get $d) (v128.bitselect
              (v128.and (local.get $gv) (i32x4.eq (local.get $best) (v128.const i32x4 0 0 0 0)))
              (v128.load (local.get $d)) (local.get $valid)))
            (local.set $d (i32.add (local.get $d) (local.get $pixel)))
            (v128.store (local.get $d) (v128.bitselect
              (v128.and (local.get $gv) (i32x4.eq (local.get $best) (v128.const i32x4 1 1 1 1)))
              (v128.load (local.get $d)) (local.get $valid)))
            (local.set $d (i32.add (i32.sub (local.get $d) (local.get $pixel)) (local.get $row)))
            (v128.store (local.get $d) (v128.bitselect
              (v128.and (local.get $gv) (i32x4.eq (local.get $best) (v128.const i32x4 2 2 2 2)))
              (v128.load (local.get $d)) (local.get $valid)))
            (local.set $d (i32.add (local.get $d) (local.get $pixel)))
            (v128.store (local.get $d) (v128.bitselect
              (v128.and (local.get $gv) (i32x4.eq (local.get $best) (v128.const i32x4 3 3 3 3)))
              (v128.load (local.get $d)) (local.get $valid)))
            (br_if $blocks (i32.lt_u (local.tee $c0 (i32.add (local.get $c0) (i32.const 16))) (local.get $pixel))))
          (local.set $g (i32.add (local.get $g) (local.get $pixel)))
          (local.set $p0 (i32.add (local.get $p0) (i32.shl (local.get $pixel) (i32.const 1))))
          (br_if $outCols (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (local.get $ow))))
        (br_if $outRows (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $oh))))
      (br_if $images (i32.lt_u (local.tee $b (i32.add (local.get $b) (i32.const 1))) (local.get $n)))))
