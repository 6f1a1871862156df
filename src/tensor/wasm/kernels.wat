;; backflow's WebAssembly kernels (SIMD128, float32): the source of truth for module.generated.ts.
;; Assembled by build.ts with wabt (`npm run build:wasm`); test/tensor/wasm-kernels.test.ts checks
;; the committed bytes against a fresh assembly. build.ts also derives the relaxed-SIMD variant from
;; this text: each multiply-add written `(f32x4.add (local.get $c) (f32x4.mul (local.get ..) ..))`,
;; the twelve of the gemm's 6x8 micro-kernel, the eight of its 4x8 one and of each of window.wat's two, and
;; nothing else, becomes `(f32x4.relaxed_madd .. .. (local.get $c))`. window.wat, the kernels over image windows, is
;; spliced in at its @include line at the end.
;;
;; Conventions: pointers are byte offsets; counts (m, n, k, rows, cols, len) and the matmul strides
;; (ai, ap, bp, bj, ls, ds) count float32 elements; the elementwise steps ($ia, $sa ...) are bytes.
;; Elementwise kernels work a whole vector at a time: callers pad every buffer to a multiple of 16
;; bytes, and the lanes past the end compute garbage that is never read back.
(module
  (memory (export "memory") 1)

  ;; ---------------------------------------------------------------------------------------------
  ;; Matmul. Note [wasm matmul summation order]
  ;; Every output element is the float32 sum of its products over p = 0..k-1 in increasing order,
  ;; starting from +0: c = c + a*b with the product rounded to float32 first (f32x4.mul then
  ;; f32x4.add; WebAssembly never fuses them). That is the naive float32 loop
  ;; `s = fround(s + fround(a * b))`, whatever the blocking: k is only ever blocked in increasing
  ;; order, partial sums between k-blocks are stored in float32 (exactly), and one element's sum is
  ;; never split across accumulators (a vector lane is one output element). In the relaxed-SIMD
  ;; variant the step is `c = relaxed_madd(a, b, c)`: fused or not is the engine's choice, fixed
  ;; for a given CPU and engine, so still one deterministic order per element.
  ;; ---------------------------------------------------------------------------------------------

  ;; C[6 x 8] (rows $ldc bytes apart, at $c) += A panel (kc x 6 at $pa) times B panel (kc x 8 at $pb).
  ;; Twelve f32x4 accumulators, two B vectors and one broadcast A value: the 15 xmm registers V8
  ;; allocates from (it keeps xmm15 as scratch).
  ;; Note [6x8 micro-kernel]: twelve independent sums hide the multiply-add's latency with room to
  ;; spare where eight only just did, and each B vector loaded serves six rows instead of four: 57.6
  ;; GFLOP/s against 53.5 for the 4x8 kernel on panels in L1 (docs/measurements.md, 2026-12-05). That
  ;; is with relaxed_madd, one instruction into its accumulator. A multiply and an add need a 16th
  ;; register for the product, so the simd128 variant spills with six rows (0.73x the 4x8 kernel at
  ;; 512) and keeps 4x8: the caller passes the rows ($mr) for the variant. Do not unroll the k loop: TurboFan then issues
  ;; all the unrolled steps' loads first and spills accumulators (measured on the 4x8 kernel: 35
  ;; GFLOP/s unrolled by 4, 58 not unrolled, at 512).
  ;; With $first (the first block along k) the sums start from +0 instead of C, which then needs no
  ;; zeroing: the same +0 a zeroed C would give.
  (func $kernel6x8 (param $kc i32) (param $pa i32) (param $pb i32) (param $c i32) (param $ldc i32)
                   (param $first i32)
    (local $c1 i32) (local $c2 i32) (local $c3 i32) (local $c4 i32) (local $c5 i32) (local $end i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local $c40 v128) (local $c41 v128) (local $c50 v128) (local $c51 v128)
    (local.set $c1 (i32.add (local.get $c) (local.get $ldc)))
    (local.set $c2 (i32.add (local.get $c1) (local.get $ldc)))
    (local.set $c3 (i32.add (local.get $c2) (local.get $ldc)))
    (local.set $c4 (i32.add (local.get $c3) (local.get $ldc)))
    (local.set $c5 (i32.add (local.get $c4) (local.get $ldc)))
    (if (i32.eqz (local.get $first))
      (then
        (local.set $c00 (v128.load offset=0 (local.get $c)))
        (local.set $c01 (v128.load offset=16 (local.get $c)))
        (local.set $c10 (v128.load offset=0 (local.get $c1)))
        (local.set $c11 (v128.load offset=16 (local.get $c1)))
        (local.set $c20 (v128.load offset=0 (local.get $c2)))
        (local.set $c21 (v128.load offset=16 (local.get $c2)))
        (local.set $c30 (v128.load offset=0 (local.get $c3)))
        (local.set $c31 (v128.load offset=16 (local.get $c3)))
        (local.set $c40 (v128.load offset=0 (local.get $c4)))
        (local.set $c41 (v128.load offset=16 (local.get $c4)))
        (local.set $c50 (v128.load offset=0 (local.get $c5)))
        (local.set $c51 (v128.load offset=16 (local.get $c5)))))
    (local.set $end (i32.add (local.get $pa) (i32.mul (local.get $kc) (i32.const 24))))
    (block $done
      (loop $steps
        (br_if $done (i32.ge_u (local.get $pa) (local.get $end)))
        (local.set $b0 (v128.load offset=0 (local.get $pb)))
        (local.set $b1 (v128.load offset=16 (local.get $pb)))
        (local.set $a (v128.load32_splat offset=0 (local.get $pa)))
        (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat offset=4 (local.get $pa)))
        (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat offset=8 (local.get $pa)))
        (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat offset=12 (local.get $pa)))
        (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat offset=16 (local.get $pa)))
        (local.set $c40 (f32x4.add (local.get $c40) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c41 (f32x4.add (local.get $c41) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat offset=20 (local.get $pa)))
        (local.set $c50 (f32x4.add (local.get $c50) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c51 (f32x4.add (local.get $c51) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $pa (i32.add (local.get $pa) (i32.const 24)))
        (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
        (br $steps)))
    (v128.store offset=0 (local.get $c) (local.get $c00))
    (v128.store offset=16 (local.get $c) (local.get $c01))
    (v128.store offset=0 (local.get $c1) (local.get $c10))
    (v128.store offset=16 (local.get $c1) (local.get $c11))
    (v128.store offset=0 (local.get $c2) (local.get $c20))
    (v128.store offset=16 (local.get $c2) (local.get $c21))
    (v128.store offset=0 (local.get $c3) (local.get $c30))
    (v128.store offset=16 (local.get $c3) (local.get $c31))
    (v128.store offset=0 (local.get $c4) (local.get $c40))
    (v128.store offset=16 (local.get $c4) (local.get $c41))
    (v128.store offset=0 (local.get $c5) (local.get $c50))
    (v128.store offset=16 (local.get $c5) (local.get $c51)))

  ;; The same for C[4 x 8] and an A panel kc x 4: the simd128 variant's micro-kernel, whose
  ;; multiply and add need a register for the product that six rows leave none for (Note [6x8
  ;; micro-kernel]).
  (func $kernel4x8 (param $kc i32) (param $pa i32) (param $pb i32) (param $c i32) (param $ldc i32)
                   (param $first i32)
    (local $c1 i32) (local $c2 i32) (local $c3 i32) (local $end i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local.set $c1 (i32.add (local.get $c) (local.get $ldc)))
    (local.set $c2 (i32.add (local.get $c1) (local.get $ldc)))
    (local.set $c3 (i32.add (local.get $c2) (local.get $ldc)))
    (if (i32.eqz (local.get $first))
      (then
        (local.set $c00 (v128.load offset=0 (local.get $c)))
        (local.set $c01 (v128.load offset=16 (local.get $c)))
        (local.set $c10 (v128.load offset=0 (local.get $c1)))
        (local.set $c11 (v128.load offset=16 (local.get $c1)))
        (local.set $c20 (v128.load offset=0 (local.get $c2)))
        (local.set $c21 (v128.load offset=16 (local.get $c2)))
        (local.set $c30 (v128.load offset=0 (local.get $c3)))
        (local.set $c31 (v128.load offset=16 (local.get $c3)))))
    (local.set $end (i32.add (local.get $pa) (i32.shl (local.get $kc) (i32.const 4))))
    (block $done
      (loop $steps
        (br_if $done (i32.ge_u (local.get $pa) (local.get $end)))
        (local.set $b0 (v128.load offset=0 (local.get $pb)))
        (local.set $b1 (v128.load offset=16 (local.get $pb)))
        (local.set $a (v128.load32_splat offset=0 (local.get $pa)))
        (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat offset=4 (local.get $pa)))
        (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat offset=8 (local.get $pa)))
        (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat offset=12 (local.get $pa)))
        (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $pa (i32.add (local.get $pa) (i32.const 16)))
        (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
        (br $steps)))
    (v128.store offset=0 (local.get $c) (local.get $c00))
    (v128.store offset=16 (local.get $c) (local.get $c01))
    (v128.store offset=0 (local.get $c1) (local.get $c10))
    (v128.store offset=16 (local.get $c1) (local.get $c11))
    (v128.store offset=0 (local.get $c2) (local.get $c20))
    (v128.store offset=16 (local.get $c2) (local.get $c21))
    (v128.store offset=0 (local.get $c3) (local.get $c30))
    (v128.store offset=16 (local.get $c3) (local.get $c31)))

  ;; Packs `count` lanes (rows of op(A) or columns of op(B)), `depth` deep along k, into panels
  ;; `width` (6 or 8) wide: panel q holds, for p = 0..depth-1, the values of lanes q*width..
  ;; side by side, +0 past `count`. Element (lane r, depth p) is at $src + 4*(r*$ls + p*$ds).
  ;; Whole panels of an operand contiguous along the lanes are copied a vector at a time; those
  ;; contiguous along k are transposed 4x4 in registers, so a transposed operand costs no extra pass.
  (func $pack (param $src i32) (param $ls i32) (param $ds i32) (param $count i32) (param $depth i32)
              (param $width i32) (param $out i32)
    (local $r0 i32) (local $rows i32) (local $panelBytes i32)
    (local.set $panelBytes (i32.shl (i32.mul (local.get $width) (local.get $depth)) (i32.const 2)))
    (block $done
      (loop $panels
        (br_if $done (i32.ge_u (local.get $r0) (local.get $count)))
        (local.set $rows (i32.sub (local.get $count) (local.get $r0)))
        (if (i32.ge_u (local.get $rows) (local.get $width))
          (then
            (if (i32.eq (local.get $ls) (i32.const 1))
              (then (call $packCopy (local.get $src) (local.get $ds) (local.get $depth) (local.get $width)
                                    (local.get $out)))
              (else (if (i32.eq (local.get $ds) (i32.const 1))
                (then (call $packTranspose (local.get $src) (local.get $ls) (local.get $depth)
                                           (local.get $width) (local.get $out)))
                (else (call $packScalar (local.get $src) (local.get $ls) (local.get $ds) (local.get $width)
                                        (local.get $depth) (local.get $width) (local.get $out)))))))
          (else (call $packScalar (local.get $src) (local.get $ls) (local.get $ds) (local.get $rows)
                                  (local.get $depth) (local.get $width) (local.get $out))))
        (local.set $src (i32.add (local.get $src)
                                 (i32.shl (i32.mul (local.get $width) (local.get $ls)) (i32.const 2))))
        (local.set $out (i32.add (local.get $out) (local.get $panelBytes)))
        (local.set $r0 (i32.add (local.get $r0) (local.get $width)))
        (br $panels))))

  ;; One panel whose lanes are contiguous: `width` floats per k step, copied as vectors. A width of 6
  ;; copies 8 floats a step: the 2 extra land where the next step (or the next panel, packed after
  ;; this one, or the region's slack) is written next.
  (func $packCopy (param $src i32) (param $ds i32) (param $depth i32) (param $width i32) (param $out i32)
    (local $end i32) (local $q i32) (local $wb i32)
    (local.set $ds (i32.shl (local.get $ds) (i32.const 2)))
    (local.set $wb (i32.shl (local.get $width) (i32.const 2)))
    (local.set $end (i32.add (local.get $out) (i32.mul (local.get $wb) (local.get $depth))))
    (block $done
      (loop $steps
        (br_if $done (i32.ge_u (local.get $out) (local.get $end)))
        (local.set $q (i32.const 0))
        (loop $vectors
          (v128.store (i32.add (local.get $out) (local.get $q)) (v128.load (i32.add (local.get $src) (local.get $q))))
          (br_if $vectors (i32.lt_u (local.tee $q (i32.add (local.get $q) (i32.const 16))) (local.get $wb))))
        (local.set $src (i32.add (local.get $src) (local.get $ds)))
        (local.set $out (i32.add (local.get $out) (local.get $wb)))
        (br $steps))))

  ;; One panel whose lanes are `ls` floats apart and contiguous along k: 4x4 blocks are loaded as
  ;; four rows and stored transposed (and the last two lanes of a panel 6 wide two rows at a time);
  ;; the last depth % 4 steps go through $packScalar.
  (func $packTranspose (param $src i32) (param $ls i32) (param $depth i32) (param $width i32) (param $out i32)
    (local $p i32) (local $d4 i32) (local $q i32) (local $s i32) (local $o i32) (local $wb i32)
    (local $r0 v128) (local $r1 v128) (local $r2 v128) (local $r3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $wb (i32.shl (local.get $width) (i32.const 2)))
    (local.set $d4 (i32.and (local.get $depth) (i32.const -4)))
    (block $done
      (loop $blocks
        (br_if $done (i32.ge_u (local.get $p) (local.get $d4)))
        (local.set $q (i32.const 0))
        (loop $lanes
          ;; rows q..q+3 at depth p..p+3
          (local.set $s (i32.add (local.get $src)
            (i32.shl (i32.add (i32.mul (local.get $q) (local.get $ls)) (local.get $p)) (i32.const 2))))
          (local.set $r0 (v128.load (local.get $s)))
          (local.set $s (i32.add (local.get $s) (i32.shl (local.get $ls) (i32.const 2))))
          (local.set $r1 (v128.load (local.get $s)))
          (local.set $s (i32.add (local.get $s) (i32.shl (local.get $ls) (i32.const 2))))
          (local.set $r2 (v128.load (local.get $s)))
          (local.set $s (i32.add (local.get $s) (i32.shl (local.get $ls) (i32.const 2))))
          (local.set $r3 (v128.load (local.get $s)))
          ;; [a0 b0 a1 b1] [a2 b2 a3 b3] [c0 d0 c1 d1] [c2 d2 c3 d3]
          (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $r0) (local.get $r1)))
          (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $r0) (local.get $r1)))
          (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $r2) (local.get $r3)))
          (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $r2) (local.get $r3)))
          (local.set $o (i32.add (local.get $out)
            (i32.add (i32.mul (local.get $p) (local.get $wb)) (i32.shl (local.get $q) (i32.const 2)))))
          (v128.store (local.get $o) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)))
          (local.set $o (i32.add (local.get $o) (local.get $wb)))
          (v128.store (local.get $o) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2)))
          (local.set $o (i32.add (local.get $o) (local.get $wb)))
          (v128.store (local.get $o) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)))
          (local.set $o (i32.add (local.get $o) (local.get $wb)))
          (v128.store (local.get $o) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3)))
          (br_if $lanes (i32.le_u (i32.add (local.tee $q (i32.add (local.get $q) (i32.const 4))) (i32.const 4))
                                  (local.get $width))))
        ;; a width of 6: lanes 4 and 5, two rows at depth p..p+3 interleaved into pairs
        (if (i32.lt_u (local.get $q) (local.get $width))
          (then
            (local.set $s (i32.add (local.get $src)
              (i32.shl (i32.add (i32.mul (local.get $q) (local.get $ls)) (local.get $p)) (i32.const 2))))
            (local.set $r0 (v128.load (local.get $s)))
            (local.set $r1 (v128.load (i32.add (local.get $s) (i32.shl (local.get $ls) (i32.const 2)))))
            (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $r0) (local.get $r1)))
            (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $r0) (local.get $r1)))
            (local.set $o (i32.add (local.get $out)
              (i32.add (i32.mul (local.get $p) (local.get $wb)) (i32.shl (local.get $q) (i32.const 2)))))
            (v128.store64_lane 0 (local.get $o) (local.get $t0))
            (local.set $o (i32.add (local.get $o) (local.get $wb)))
            (v128.store64_lane 1 (local.get $o) (local.get $t0))
            (local.set $o (i32.add (local.get $o) (local.get $wb)))
            (v128.store64_lane 0 (local.get $o) (local.get $t1))
            (local.set $o (i32.add (local.get $o) (local.get $wb)))
            (v128.store64_lane 1 (local.get $o) (local.get $t1))))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (br $blocks)))
    (if (i32.lt_u (local.get $d4) (local.get $depth))
      (then (call $packScalar
        (i32.add (local.get $src) (i32.shl (local.get $d4) (i32.const 2))) (local.get $ls) (i32.const 1)
        (local.get $width) (i32.sub (local.get $depth) (local.get $d4)) (local.get $width)
        (i32.add (local.get $out) (i32.mul (local.get $d4) (local.get $wb)))))))

  ;; One panel element by element, the lanes from `rows` to `width` filled with +0.
  (func $packScalar (param $src i32) (param $ls i32) (param $ds i32) (param $rows i32) (param $depth i32)
                    (param $width i32) (param $out i32)
    (local $p i32) (local $r i32)
    (local.set $ls (i32.shl (local.get $ls) (i32.const 2)))
    (local.set $ds (i32.shl (local.get $ds) (i32.const 2)))
    (block $done
      (loop $steps
        (br_if $done (i32.ge_u (local.get $p) (local.get $depth)))
        (local.set $r (i32.const 0))
        (loop $lanes
          (f32.store (local.get $out)
            (if (result f32) (i32.lt_u (local.get $r) (local.get $rows))
              (then (f32.load (i32.add (i32.add (local.get $src) (i32.mul (local.get $p) (local.get $ds)))
                                       (i32.mul (local.get $r) (local.get $ls)))))
              (else (f32.const 0))))
          (local.set $out (i32.add (local.get $out) (i32.const 4)))
          (br_if $lanes (i32.lt_u (local.tee $r (i32.add (local.get $r) (i32.const 1))) (local.get $width))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $steps))))

  ;; C[m, n] (contiguous at $c) = op(A)[m, k] op(B)[k, n], op(A)[i, p] at $a + 4*(i*ai + p*ap) and
  ;; op(B)[p, j] at $b + 4*(p*bp + j*bj): the Goto/BLIS loop nest. Blocks of op(B) (kc x nc) and
  ;; op(A) (mc x kc) are packed into panels, and the micro-kernel ($mr x 8, $mr 6 or 4) accumulates
  ;; tiles of a padded copy of C ($cpad, a multiple of $mr x 8; the first block along k writes every tile, from +0) that
  ;; is compacted into $c at the end, unless it is $c itself (the caller's choice when n is a
  ;; multiple of 8: the tiles' rows past m then land in room the caller leaves after C). See Note [wasm matmul summation order].
  (func (export "gemm")
    (param $a i32) (param $ai i32) (param $ap i32) (param $b i32) (param $bp i32) (param $bj i32)
    (param $c i32) (param $m i32) (param $n i32) (param $k i32)
    (param $cpad i32) (param $packA i32) (param $packB i32) (param $mcMax i32) (param $kcMax i32) (param $ncMax i32)
    (param $mr i32)
    (local $mPad i32) (local $nPad i32) (local $ldc i32) (local $jc i32) (local $nc i32) (local $ncPad i32)
    (local $pc i32) (local $kc i32) (local $ic i32) (local $mc i32) (local $mcPad i32) (local $jr i32)
    (local $ir i32) (local $i i32) (local $tileA i32) (local $tileB i32) (local $tileC i32)
    (local.set $mPad (i32.mul (i32.div_u (i32.add (local.get $m) (i32.sub (local.get $mr) (i32.const 1))) (local.get $mr))
                               (local.get $mr)))
    (local.set $nPad (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8)))
    (local.set $ldc (i32.shl (local.get $nPad) (i32.const 2)))
    ;; Blocks along k of equal depth, at most kcMax: 784 as 4 x 196 rather than 3 x 256 + 16, whose
    ;; thin last block would load and store every tile of C for 16 steps.
    (if (i32.gt_u (local.get $k) (local.get $kcMax))
      (then (local.set $kcMax (i32.div_u (i32.add (local.get $k) (i32.sub (local.tee $i
        (i32.div_u (i32.add (local.get $k) (i32.sub (local.get $kcMax) (i32.const 1))) (local.get $kcMax)))
        (i32.const 1))) (local.get $i)))
        (local.set $i (i32.const 0))))
    ;; k = 0: no block along k, so zeros
    (if (i32.eqz (local.get $k))
      (then (memory.fill (local.get $cpad) (i32.const 0) (i32.mul (local.get $mPad) (local.get $ldc)))))
    (block $jcDone
      (loop $jcLoop
        (br_if $jcDone (i32.ge_u (local.get $jc) (local.get $n)))
        (local.set $nc (select (local.get $ncMax) (i32.sub (local.get $n) (local.get $jc))
                               (i32.lt_u (local.get $ncMax) (i32.sub (local.get $n) (local.get $jc)))))
        (local.set $ncPad (i32.and (i32.add (local.get $nc) (i32.const 7)) (i32.const -8)))
        (local.set $pc (i32.const 0))
        (block $pcDone
          (loop $pcLoop
            (br_if $pcDone (i32.ge_u (local.get $pc) (local.get $k)))
            (local.set $kc (select (local.get $kcMax) (i32.sub (local.get $k) (local.get $pc))
                                   (i32.lt_u (local.get $kcMax) (i32.sub (local.get $k) (local.get $pc)))))
            (call $pack
              (i32.add (local.get $b) (i32.shl (i32.add (i32.mul (local.get $pc) (local.get $bp))
                                                        (i32.mul (local.get $jc) (local.get $bj))) (i32.const 2)))
              (local.get $bj) (local.get $bp) (local.get $nc) (local.get $kc) (i32.const 8) (local.get $packB))
            (local.set $ic (i32.const 0))
            (block $icDone
              (loop $icLoop
                (br_if $icDone (i32.ge_u (local.get $ic) (local.get $m)))
                (local.set $mc (select (local.get $mcMax) (i32.sub (local.get $m) (local.get $ic))
                                       (i32.lt_u (local.get $mcMax) (i32.sub (local.get $m) (local.get $ic)))))
                (local.set $mcPad (i32.mul (i32.div_u (i32.add (local.get $mc) (i32.sub (local.get $mr) (i32.const 1)))
                                                        (local.get $mr))
                                           (local.get $mr)))
                (call $pack
                  (i32.add (local.get $a) (i32.shl (i32.add (i32.mul (local.get $ic) (local.get $ai))
                                                            (i32.mul (local.get $pc) (local.get $ap))) (i32.const 2)))
                  (local.get $ai) (local.get $ap) (local.get $mc) (local.get $kc) (local.get $mr) (local.get $packA))
                (local.set $jr (i32.const 0))
                (block $jrDone
                  (loop $jrLoop
                    (br_if $jrDone (i32.ge_u (local.get $jr) (local.get $ncPad)))
                    (local.set $ir (i32.const 0))
                    (block $irDone
                      (loop $irLoop
                        (br_if $irDone (i32.ge_u (local.get $ir) (local.get $mcPad)))
                        (local.set $tileA (i32.add (local.get $packA)
                          (i32.shl (i32.mul (local.get $ir) (local.get $kc)) (i32.const 2))))
                        (local.set $tileB (i32.add (local.get $packB)
                          (i32.shl (i32.mul (local.get $jr) (local.get $kc)) (i32.const 2))))
                        (local.set $tileC (i32.add (local.get $cpad)
                          (i32.add (i32.mul (i32.add (local.get $ic) (local.get $ir)) (local.get $ldc))
                                   (i32.shl (i32.add (local.get $jc) (local.get $jr)) (i32.const 2)))))
                        (if (i32.eq (local.get $mr) (i32.const 6))
                          (then (call $kernel6x8 (local.get $kc) (local.get $tileA) (local.get $tileB) (local.get $tileC)
                                                 (local.get $ldc) (i32.eqz (local.get $pc))))
                          (else (call $kernel4x8 (local.get $kc) (local.get $tileA) (local.get $tileB) (local.get $tileC)
                                                 (local.get $ldc) (i32.eqz (local.get $pc)))))
                        (local.set $ir (i32.add (local.get $ir) (local.get $mr)))
                        (br $irLoop)))
                    (local.set $jr (i32.add (local.get $jr) (i32.const 8)))
                    (br $jrLoop)))
                (local.set $ic (i32.add (local.get $ic) (local.get $mc)))
                (br $icLoop)))
            (local.set $pc (i32.add (local.get $pc) (local.get $kc)))
            (br $pcLoop)))
        (local.set $jc (i32.add (local.get $jc) (local.get $nc)))
        (br $jcLoop)))
    (block $copied
      (loop $rows
        (br_if $copied (i32.or (i32.ge_u (local.get $i) (local.get $m)) (i32.eq (local.get $c) (local.get $cpad))))
        (memory.copy (i32.add (local.get $c) (i32.shl (i32.mul (local.get $i) (local.get $n)) (i32.const 2)))
                     (i32.add (local.get $cpad) (i32.mul (local.get $i) (local.get $ldc)))
                     (i32.shl (local.get $n) (i32.const 2)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows))))

  ;; ---------------------------------------------------------------------------------------------
  ;; Elementwise. Each kernel computes what the TypeScript kernel computes in float64 and rounds to
  ;; float32, so the results are bitwise equal to it (NaN payloads aside): add, sub, mul, div and
  ;; square round once either way, and leakyRelu multiplies by its float64 slope in float64.
  ;; ---------------------------------------------------------------------------------------------

  (func (export "neg") (param $x i32) (param $o i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (v128.store (local.get $o) (f32x4.neg (v128.load (local.get $x))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  (func (export "abs") (param $x i32) (param $o i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (v128.store (local.get $o) (f32x4.abs (v128.load (local.get $x))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  (func (export "square") (param $x i32) (param $o i32) (param $n i32)
    (local $end i32) (local $v v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (v128.store (local.get $o) (f32x4.mul (local.get $v) (local.get $v)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; x > 0 or NaN ? x : +0
  (func (export "relu") (param $x i32) (param $o i32) (param $n i32)
    (local $end i32) (local $v v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (v128.store (local.get $o)
          (v128.bitselect (local.get $v) (v128.const i32x4 0 0 0 0)
            (v128.or (f32x4.gt (local.get $v) (v128.const f32x4 0 0 0 0)) (f32x4.ne (local.get $v) (local.get $v)))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; x > 0 ? x : float32(slope * x), the product in float64. (Here and below, the high lanes of a
  ;; f32x4 are promoted after a shuffle moves them low, and two demoted f64x2 are joined by a shuffle.
  ;; Helper functions would read better, but V8 11 does not inline wasm calls.)
  (func (export "leakyRelu") (param $x i32) (param $o i32) (param $n i32) (param $slope f64)
    (local $end i32) (local $v v128) (local $s v128)
    (local.set $s (f64x2.splat (local.get $slope)))
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (v128.store (local.get $o)
          (v128.bitselect (local.get $v)
            (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (local.get $s)))
              (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle
                8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v))) (local.get $s))))
            (f32x4.gt (local.get $v) (v128.const f32x4 0 0 0 0))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; Kernels in float64: each vector of four float32 is promoted to two f64x2 ($a0 and $a1, two
  ;; independent chains, which the CPU overlaps; helper functions would read better, but V8 11 does
  ;; not inline wasm calls, which cost a quarter here), computed on as the TypeScript kernel computes
  ;; in float64, the same operations in the same order, and rounded once. erf32 (Note [float32 erf]
  ;; in src/tensor/special.ts): x clamped to [-4, 4] (min and max keep NaN), x * P(x^2) / Q(x^2) by
  ;; Horner's rule, +-1 where |x| >= 4 (the clamped x over 4). exp32 (Note [float32 exp]): x clamped
  ;; to [-110, 100], k = floor(x log2(e) + 1/2), r = x - k ln2hi - k ln2lo, e^r by Horner's rule to
  ;; r^11, times 2^k built in the exponent bits, +0 where x < -110; a NaN stays NaN (k is then 0).

  ;; erf of float32 values.
  (func (export "erf") (param $x i32) (param $o i32) (param $n i32)
    (local $end i32) (local $v v128) (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128)
    (local $c0 v128) (local $c1 v128) (local $t0 v128) (local $t1 v128) (local $p0 v128) (local $p1 v128)
    (local $q0 v128) (local $q1 v128) (local $k0 v128) (local $k1 v128) (local $e0 v128) (local $e1 v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (local.set $a0 (f64x2.promote_low_f32x4 (local.get $v)))
        (local.set $a1 (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v))))
        (local.set $c0 (f64x2.max (f64x2.min (local.get $a0) (v128.const f64x2 4 4)) (v128.const f64x2 -4 -4)))
        (local.set $c1 (f64x2.max (f64x2.min (local.get $a1) (v128.const f64x2 4 4)) (v128.const f64x2 -4 -4)))
        (local.set $t0 (f64x2.mul (local.get $c0) (local.get $c0)))
        (local.set $t1 (f64x2.mul (local.get $c1) (local.get $c1)))
        (local.set $p0 (f64x2.add (f64x2.mul (v128.const f64x2 3.0046653626465703e-9 3.0046653626465703e-9) (local.get $t0)) (v128.const f64x2 7.52757222992608e-7 7.52757222992608e-7)))
        (local.set $p1 (f64x2.add (f64x2.mul (v128.const f64x2 3.0046653626465703e-9 3.0046653626465703e-9) (local.get $t1)) (v128.const f64x2 7.52757222992608e-7 7.52757222992608e-7)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 2.1786480409153245e-5 2.1786480409153245e-5)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 2.1786480409153245e-5 2.1786480409153245e-5)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.0005130352410139598 0.0005130352410139598)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.0005130352410139598 0.0005130352410139598)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.004962101011419447 0.004962101011419447)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.004962101011419447 0.004962101011419447)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.05811818621538122 0.05811818621538122)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.05811818621538122 0.05811818621538122)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.200342722148491 0.200342722148491)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.200342722148491 0.200342722148491)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 1.1283791670862016 1.1283791670862016)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 1.1283791670862016 1.1283791670862016)))
        (local.set $q0 (f64x2.add (f64x2.mul (v128.const f64x2 7.329634249824104e-8 7.329634249824104e-8) (local.get $t0)) (v128.const f64x2 4.518920880318722e-6 4.518920880318722e-6)))
        (local.set $q1 (f64x2.add (f64x2.mul (v128.const f64x2 7.329634249824104e-8 7.329634249824104e-8) (local.get $t1)) (v128.const f64x2 4.518920880318722e-6 4.518920880318722e-6)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.00011151307401191174 0.00011151307401191174)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.00011151307401191174 0.00011151307401191174)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.001715198385432194 0.001715198385432194)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.001715198385432194 0.001715198385432194)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.01771883203393629 0.01771883203393629)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.01771883203393629 0.01771883203393629)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.12180005441519122 0.12180005441519122)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.12180005441519122 0.12180005441519122)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.5108824475862049 0.5108824475862049)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.5108824475862049 0.5108824475862049)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 1 1)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 1 1)))
        (local.set $e0 (v128.bitselect (f64x2.mul (local.get $c0) (v128.const f64x2 0.25 0.25))
          (f64x2.div (f64x2.mul (local.get $c0) (local.get $p0)) (local.get $q0))
          (f64x2.ge (f64x2.abs (local.get $c0)) (v128.const f64x2 4 4))))
        (local.set $e1 (v128.bitselect (f64x2.mul (local.get $c1) (v128.const f64x2 0.25 0.25))
          (f64x2.div (f64x2.mul (local.get $c1) (local.get $p1)) (local.get $q1))
          (f64x2.ge (f64x2.abs (local.get $c1)) (v128.const f64x2 4 4))))
        (v128.store (local.get $o) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (local.get $e0)) (f32x4.demote_f64x2_zero (local.get $e1))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; exp of float32 values.
  (func (export "exp") (param $x i32) (param $o i32) (param $n i32)
    (local $end i32) (local $v v128) (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128)
    (local $c0 v128) (local $c1 v128) (local $t0 v128) (local $t1 v128) (local $p0 v128) (local $p1 v128)
    (local $q0 v128) (local $q1 v128) (local $k0 v128) (local $k1 v128) (local $e0 v128) (local $e1 v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (local.set $a0 (f64x2.promote_low_f32x4 (local.get $v)))
        (local.set $a1 (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v))))
        (local.set $c0 (f64x2.max (f64x2.min (local.get $a0) (v128.const f64x2 100 100)) (v128.const f64x2 -110 -110)))
        (local.set $c1 (f64x2.max (f64x2.min (local.get $a1) (v128.const f64x2 100 100)) (v128.const f64x2 -110 -110)))
        (local.set $k0 (f64x2.floor (f64x2.add (f64x2.mul (local.get $c0) (v128.const f64x2 1.4426950408889634 1.4426950408889634)) (v128.const f64x2 0.5 0.5))))
        (local.set $k1 (f64x2.floor (f64x2.add (f64x2.mul (local.get $c1) (v128.const f64x2 1.4426950408889634 1.4426950408889634)) (v128.const f64x2 0.5 0.5))))
        (local.set $t0 (f64x2.sub (f64x2.sub (local.get $c0) (f64x2.mul (local.get $k0) (v128.const f64x2 0.6931471803691238 0.6931471803691238)))
                                 (f64x2.mul (local.get $k0) (v128.const f64x2 1.9082149292705877e-10 1.9082149292705877e-10))))
        (local.set $t1 (f64x2.sub (f64x2.sub (local.get $c1) (f64x2.mul (local.get $k1) (v128.const f64x2 0.6931471803691238 0.6931471803691238)))
                                 (f64x2.mul (local.get $k1) (v128.const f64x2 1.9082149292705877e-10 1.9082149292705877e-10))))
        (local.set $p0 (f64x2.add (f64x2.mul (v128.const f64x2 2.505210838544172e-8 2.505210838544172e-8) (local.get $t0)) (v128.const f64x2 2.755731922398589e-7 2.755731922398589e-7)))
        (local.set $p1 (f64x2.add (f64x2.mul (v128.const f64x2 2.505210838544172e-8 2.505210838544172e-8) (local.get $t1)) (v128.const f64x2 2.755731922398589e-7 2.755731922398589e-7)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 2.7557319223985893e-6 2.7557319223985893e-6)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 2.7557319223985893e-6 2.7557319223985893e-6)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 2.48015873015873e-5 2.48015873015873e-5)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 2.48015873015873e-5 2.48015873015873e-5)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.0001984126984126984 0.0001984126984126984)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.0001984126984126984 0.0001984126984126984)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.001388888888888889 0.001388888888888889)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.001388888888888889 0.001388888888888889)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.008333333333333333 0.008333333333333333)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.008333333333333333 0.008333333333333333)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.041666666666666664 0.041666666666666664)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.041666666666666664 0.041666666666666664)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.16666666666666666 0.16666666666666666)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.16666666666666666 0.16666666666666666)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.5 0.5)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.5 0.5)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 1 1)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 1 1)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 1 1)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 1 1)))
        (local.set $e0 (v128.andnot
          (f64x2.mul (local.get $p0) (i64x2.shl (i64x2.add (i64x2.extend_low_i32x4_s (i32x4.trunc_sat_f64x2_s_zero (local.get $k0)))
                                                          (v128.const i64x2 1023 1023)) (i32.const 52)))
          (f64x2.lt (local.get $a0) (v128.const f64x2 -110 -110))))
        (local.set $e1 (v128.andnot
          (f64x2.mul (local.get $p1) (i64x2.shl (i64x2.add (i64x2.extend_low_i32x4_s (i32x4.trunc_sat_f64x2_s_zero (local.get $k1)))
                                                          (v128.const i64x2 1023 1023)) (i32.const 52)))
          (f64x2.lt (local.get $a1) (v128.const f64x2 -110 -110))))
        (v128.store (local.get $o) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (local.get $e0)) (f32x4.demote_f64x2_zero (local.get $e1))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; x Phi(x) of float32 values (Note [fused GELU] in src/ops/gelu.ts): x * ((erf32(x / sqrt 2) + 1) * 0.5).
  (func (export "gelu") (param $x i32) (param $o i32) (param $n i32)
    (local $end i32) (local $v v128) (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128)
    (local $c0 v128) (local $c1 v128) (local $t0 v128) (local $t1 v128) (local $p0 v128) (local $p1 v128)
    (local $q0 v128) (local $q1 v128) (local $k0 v128) (local $k1 v128) (local $e0 v128) (local $e1 v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (local.set $a0 (f64x2.promote_low_f32x4 (local.get $v)))
        (local.set $a1 (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v))))
        (local.set $b0 (f64x2.mul (local.get $a0) (v128.const f64x2 0.7071067811865476 0.7071067811865476)))
        (local.set $b1 (f64x2.mul (local.get $a1) (v128.const f64x2 0.7071067811865476 0.7071067811865476)))
        (local.set $c0 (f64x2.max (f64x2.min (local.get $b0) (v128.const f64x2 4 4)) (v128.const f64x2 -4 -4)))
        (local.set $c1 (f64x2.max (f64x2.min (local.get $b1) (v128.const f64x2 4 4)) (v128.const f64x2 -4 -4)))
        (local.set $t0 (f64x2.mul (local.get $c0) (local.get $c0)))
        (local.set $t1 (f64x2.mul (local.get $c1) (local.get $c1)))
        (local.set $p0 (f64x2.add (f64x2.mul (v128.const f64x2 3.0046653626465703e-9 3.0046653626465703e-9) (local.get $t0)) (v128.const f64x2 7.52757222992608e-7 7.52757222992608e-7)))
        (local.set $p1 (f64x2.add (f64x2.mul (v128.const f64x2 3.0046653626465703e-9 3.0046653626465703e-9) (local.get $t1)) (v128.const f64x2 7.52757222992608e-7 7.52757222992608e-7)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 2.1786480409153245e-5 2.1786480409153245e-5)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 2.1786480409153245e-5 2.1786480409153245e-5)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.0005130352410139598 0.0005130352410139598)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.0005130352410139598 0.0005130352410139598)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.004962101011419447 0.004962101011419447)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.004962101011419447 0.004962101011419447)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.05811818621538122 0.05811818621538122)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.05811818621538122 0.05811818621538122)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.200342722148491 0.200342722148491)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.200342722148491 0.200342722148491)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 1.1283791670862016 1.1283791670862016)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 1.1283791670862016 1.1283791670862016)))
        (local.set $q0 (f64x2.add (f64x2.mul (v128.const f64x2 7.329634249824104e-8 7.329634249824104e-8) (local.get $t0)) (v128.const f64x2 4.518920880318722e-6 4.518920880318722e-6)))
        (local.set $q1 (f64x2.add (f64x2.mul (v128.const f64x2 7.329634249824104e-8 7.329634249824104e-8) (local.get $t1)) (v128.const f64x2 4.518920880318722e-6 4.518920880318722e-6)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.00011151307401191174 0.00011151307401191174)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.00011151307401191174 0.00011151307401191174)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.001715198385432194 0.001715198385432194)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.001715198385432194 0.001715198385432194)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.01771883203393629 0.01771883203393629)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.01771883203393629 0.01771883203393629)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.12180005441519122 0.12180005441519122)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.12180005441519122 0.12180005441519122)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.5108824475862049 0.5108824475862049)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.5108824475862049 0.5108824475862049)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 1 1)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 1 1)))
        (local.set $e0 (v128.bitselect (f64x2.mul (local.get $c0) (v128.const f64x2 0.25 0.25))
          (f64x2.div (f64x2.mul (local.get $c0) (local.get $p0)) (local.get $q0))
          (f64x2.ge (f64x2.abs (local.get $c0)) (v128.const f64x2 4 4))))
        (local.set $e1 (v128.bitselect (f64x2.mul (local.get $c1) (v128.const f64x2 0.25 0.25))
          (f64x2.div (f64x2.mul (local.get $c1) (local.get $p1)) (local.get $q1))
          (f64x2.ge (f64x2.abs (local.get $c1)) (v128.const f64x2 4 4))))
        (v128.store (local.get $o) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $a0) (f64x2.mul (f64x2.add (local.get $e0) (v128.const f64x2 1 1)) (v128.const f64x2 0.5 0.5)))) (f32x4.demote_f64x2_zero (f64x2.mul (local.get $a1) (f64x2.mul (f64x2.add (local.get $e1) (v128.const f64x2 1 1)) (v128.const f64x2 0.5 0.5))))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; GELU's derivative of float32 values (Note [fused GELU]): (erf32(x / sqrt 2) + 1) * 0.5 +
  ;; x * (exp32(x * x * -0.5) * (1 / sqrt(2 pi))).
  (func (export "geluGrad") (param $x i32) (param $o i32) (param $n i32)
    (local $end i32) (local $v v128) (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128)
    (local $c0 v128) (local $c1 v128) (local $t0 v128) (local $t1 v128) (local $p0 v128) (local $p1 v128)
    (local $q0 v128) (local $q1 v128) (local $k0 v128) (local $k1 v128) (local $e0 v128) (local $e1 v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (local.set $a0 (f64x2.promote_low_f32x4 (local.get $v)))
        (local.set $a1 (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v))))
        (local.set $b0 (f64x2.mul (local.get $a0) (v128.const f64x2 0.7071067811865476 0.7071067811865476)))
        (local.set $b1 (f64x2.mul (local.get $a1) (v128.const f64x2 0.7071067811865476 0.7071067811865476)))
        (local.set $c0 (f64x2.max (f64x2.min (local.get $b0) (v128.const f64x2 4 4)) (v128.const f64x2 -4 -4)))
        (local.set $c1 (f64x2.max (f64x2.min (local.get $b1) (v128.const f64x2 4 4)) (v128.const f64x2 -4 -4)))
        (local.set $t0 (f64x2.mul (local.get $c0) (local.get $c0)))
        (local.set $t1 (f64x2.mul (local.get $c1) (local.get $c1)))
        (local.set $p0 (f64x2.add (f64x2.mul (v128.const f64x2 3.0046653626465703e-9 3.0046653626465703e-9) (local.get $t0)) (v128.const f64x2 7.52757222992608e-7 7.52757222992608e-7)))
        (local.set $p1 (f64x2.add (f64x2.mul (v128.const f64x2 3.0046653626465703e-9 3.0046653626465703e-9) (local.get $t1)) (v128.const f64x2 7.52757222992608e-7 7.52757222992608e-7)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 2.1786480409153245e-5 2.1786480409153245e-5)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 2.1786480409153245e-5 2.1786480409153245e-5)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.0005130352410139598 0.0005130352410139598)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.0005130352410139598 0.0005130352410139598)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.004962101011419447 0.004962101011419447)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.004962101011419447 0.004962101011419447)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.05811818621538122 0.05811818621538122)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.05811818621538122 0.05811818621538122)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.200342722148491 0.200342722148491)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.200342722148491 0.200342722148491)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 1.1283791670862016 1.1283791670862016)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 1.1283791670862016 1.1283791670862016)))
        (local.set $q0 (f64x2.add (f64x2.mul (v128.const f64x2 7.329634249824104e-8 7.329634249824104e-8) (local.get $t0)) (v128.const f64x2 4.518920880318722e-6 4.518920880318722e-6)))
        (local.set $q1 (f64x2.add (f64x2.mul (v128.const f64x2 7.329634249824104e-8 7.329634249824104e-8) (local.get $t1)) (v128.const f64x2 4.518920880318722e-6 4.518920880318722e-6)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.00011151307401191174 0.00011151307401191174)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.00011151307401191174 0.00011151307401191174)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.001715198385432194 0.001715198385432194)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.001715198385432194 0.001715198385432194)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.01771883203393629 0.01771883203393629)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.01771883203393629 0.01771883203393629)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.12180005441519122 0.12180005441519122)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.12180005441519122 0.12180005441519122)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 0.5108824475862049 0.5108824475862049)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 0.5108824475862049 0.5108824475862049)))
        (local.set $q0 (f64x2.add (f64x2.mul (local.get $q0) (local.get $t0)) (v128.const f64x2 1 1)))
        (local.set $q1 (f64x2.add (f64x2.mul (local.get $q1) (local.get $t1)) (v128.const f64x2 1 1)))
        (local.set $e0 (v128.bitselect (f64x2.mul (local.get $c0) (v128.const f64x2 0.25 0.25))
          (f64x2.div (f64x2.mul (local.get $c0) (local.get $p0)) (local.get $q0))
          (f64x2.ge (f64x2.abs (local.get $c0)) (v128.const f64x2 4 4))))
        (local.set $e1 (v128.bitselect (f64x2.mul (local.get $c1) (v128.const f64x2 0.25 0.25))
          (f64x2.div (f64x2.mul (local.get $c1) (local.get $p1)) (local.get $q1))
          (f64x2.ge (f64x2.abs (local.get $c1)) (v128.const f64x2 4 4))))
        (local.set $b0 (f64x2.mul (f64x2.mul (local.get $a0) (local.get $a0)) (v128.const f64x2 -0.5 -0.5)))
        (local.set $b1 (f64x2.mul (f64x2.mul (local.get $a1) (local.get $a1)) (v128.const f64x2 -0.5 -0.5)))
        (local.set $c0 (f64x2.max (f64x2.min (local.get $b0) (v128.const f64x2 100 100)) (v128.const f64x2 -110 -110)))
        (local.set $c1 (f64x2.max (f64x2.min (local.get $b1) (v128.const f64x2 100 100)) (v128.const f64x2 -110 -110)))
        (local.set $k0 (f64x2.floor (f64x2.add (f64x2.mul (local.get $c0) (v128.const f64x2 1.4426950408889634 1.4426950408889634)) (v128.const f64x2 0.5 0.5))))
        (local.set $k1 (f64x2.floor (f64x2.add (f64x2.mul (local.get $c1) (v128.const f64x2 1.4426950408889634 1.4426950408889634)) (v128.const f64x2 0.5 0.5))))
        (local.set $t0 (f64x2.sub (f64x2.sub (local.get $c0) (f64x2.mul (local.get $k0) (v128.const f64x2 0.6931471803691238 0.6931471803691238)))
                                 (f64x2.mul (local.get $k0) (v128.const f64x2 1.9082149292705877e-10 1.9082149292705877e-10))))
        (local.set $t1 (f64x2.sub (f64x2.sub (local.get $c1) (f64x2.mul (local.get $k1) (v128.const f64x2 0.6931471803691238 0.6931471803691238)))
                                 (f64x2.mul (local.get $k1) (v128.const f64x2 1.9082149292705877e-10 1.9082149292705877e-10))))
        (local.set $p0 (f64x2.add (f64x2.mul (v128.const f64x2 2.505210838544172e-8 2.505210838544172e-8) (local.get $t0)) (v128.const f64x2 2.755731922398589e-7 2.755731922398589e-7)))
        (local.set $p1 (f64x2.add (f64x2.mul (v128.const f64x2 2.505210838544172e-8 2.505210838544172e-8) (local.get $t1)) (v128.const f64x2 2.755731922398589e-7 2.755731922398589e-7)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 2.7557319223985893e-6 2.7557319223985893e-6)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 2.7557319223985893e-6 2.7557319223985893e-6)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 2.48015873015873e-5 2.48015873015873e-5)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 2.48015873015873e-5 2.48015873015873e-5)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.0001984126984126984 0.0001984126984126984)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.0001984126984126984 0.0001984126984126984)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.001388888888888889 0.001388888888888889)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.001388888888888889 0.001388888888888889)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.008333333333333333 0.008333333333333333)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.008333333333333333 0.008333333333333333)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.041666666666666664 0.041666666666666664)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.041666666666666664 0.041666666666666664)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.16666666666666666 0.16666666666666666)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.16666666666666666 0.16666666666666666)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 0.5 0.5)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 0.5 0.5)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 1 1)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 1 1)))
        (local.set $p0 (f64x2.add (f64x2.mul (local.get $p0) (local.get $t0)) (v128.const f64x2 1 1)))
        (local.set $p1 (f64x2.add (f64x2.mul (local.get $p1) (local.get $t1)) (v128.const f64x2 1 1)))
        (local.set $q0 (v128.andnot
          (f64x2.mul (local.get $p0) (i64x2.shl (i64x2.add (i64x2.extend_low_i32x4_s (i32x4.trunc_sat_f64x2_s_zero (local.get $k0)))
                                                          (v128.const i64x2 1023 1023)) (i32.const 52)))
          (f64x2.lt (local.get $b0) (v128.const f64x2 -110 -110))))
        (local.set $q1 (v128.andnot
          (f64x2.mul (local.get $p1) (i64x2.shl (i64x2.add (i64x2.extend_low_i32x4_s (i32x4.trunc_sat_f64x2_s_zero (local.get $k1)))
                                                          (v128.const i64x2 1023 1023)) (i32.const 52)))
          (f64x2.lt (local.get $b1) (v128.const f64x2 -110 -110))))
        (v128.store (local.get $o) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (f64x2.add (f64x2.mul (f64x2.add (local.get $e0) (v128.const f64x2 1 1)) (v128.const f64x2 0.5 0.5))
            (f64x2.mul (local.get $a0) (f64x2.mul (local.get $q0) (v128.const f64x2 0.3989422804014327 0.3989422804014327))))) (f32x4.demote_f64x2_zero (f64x2.add (f64x2.mul (f64x2.add (local.get $e1) (v128.const f64x2 1 1)) (v128.const f64x2 0.5 0.5))
            (f64x2.mul (local.get $a1) (f64x2.mul (local.get $q1) (v128.const f64x2 0.3989422804014327 0.3989422804014327)))))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; Binary kernels over one row: o[i] = a op b for i < n, where a and b advance $ia and $ib bytes
  ;; per vector (16, or 0 for a value splatted into a 16-byte cell).
  (type $binaryRow (func (param i32 i32 i32 i32 i32 i32)))
  (table 9 funcref)
  (elem (i32.const 0) $add $sub $mul $div $maximum $minimum $greater $greaterEqual $equal)

  ;; `rows` rows of `cols` outputs, row r from a + r*$sa and b + r*$sb ($sa or $sb 0 for a row
  ;; vector broadcast over rows). Rows go in order, so the garbage lanes a row writes past its end
  ;; are overwritten by the next row.
  (func (export "binary") (param $op i32) (param $a i32) (param $ia i32) (param $sa i32)
                          (param $b i32) (param $ib i32) (param $sb i32) (param $o i32) (param $rows i32) (param $cols i32)
    (local $r i32)
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (call_indirect (type $binaryRow) (local.get $a) (local.get $ia) (local.get $b) (local.get $ib)
                                         (local.get $o) (local.get $cols) (local.get $op))
        (local.set $a (i32.add (local.get $a) (local.get $sa)))
        (local.set $b (i32.add (local.get $b) (local.get $sb)))
        (local.set $o (i32.add (local.get $o) (i32.shl (local.get $cols) (i32.const 2))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop))))

  (func $add (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (f32x4.add (local.get $x) (local.get $y)))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  (func $sub (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (f32x4.sub (local.get $x) (local.get $y)))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  (func $mul (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (f32x4.mul (local.get $x) (local.get $y)))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  (func $div (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (f32x4.div (local.get $x) (local.get $y)))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; NaN if either is NaN, else x >= y ? x : y (so maximum(+0, -0) is +0 and maximum(-0, +0) is -0)
  (func $maximum (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (v128.bitselect (local.get $x) (local.get $y)
            (v128.or (f32x4.ge (local.get $x) (local.get $y)) (f32x4.ne (local.get $x) (local.get $x)))))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; NaN if either is NaN, else x <= y ? x : y
  (func $minimum (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (v128.bitselect (local.get $x) (local.get $y)
            (v128.or (f32x4.le (local.get $x) (local.get $y)) (f32x4.ne (local.get $x) (local.get $x)))))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; Comparisons give 1 or 0 (0 when either is NaN).
  (func $greater (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (v128.and (f32x4.gt (local.get $x) (local.get $y)) (v128.const f32x4 1 1 1 1)))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  (func $greaterEqual (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (v128.and (f32x4.ge (local.get $x) (local.get $y)) (v128.const f32x4 1 1 1 1)))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  (func $equal (type $binaryRow) (param $a i32) (param $ia i32) (param $b i32) (param $ib i32) (param $o i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local.set $end (i32.add (local.get $o) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $x (v128.load (local.get $a)))
        (local.set $y (v128.load (local.get $b)))
        (v128.store (local.get $o)
          (v128.and (f32x4.eq (local.get $x) (local.get $y)) (v128.const f32x4 1 1 1 1)))
        (local.set $a (i32.add (local.get $a) (local.get $ia)))
        (local.set $b (i32.add (local.get $b) (local.get $ib)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vectors))))

  ;; ---------------------------------------------------------------------------------------------
  ;; Reductions and softmax. Note [wasm reduction order]
  ;; sumRows: in each row, lane j (0..3) sums the elements i = j (mod 4) of the whole vectors in
  ;; float64 in increasing i; the row sum is ((l0 + l1) + (l2 + l3)), then the last len % 4 elements
  ;; in order, rounded once to float32. sumCols: each column is summed over the rows in increasing
  ;; order in float64, which is what the TypeScript kernel does (so bitwise equal to it). maxRows and
  ;; maxCols apply the TypeScript rule `v > m or v is NaN ? v : m` from -inf, maxRows per lane first,
  ;; then the lanes in order 0..3, then the tail. Softmax sums exp in float64 lanes like sumRows.
  ;; ---------------------------------------------------------------------------------------------

  (func (export "sumRows") (param $x i32) (param $o i32) (param $rows i32) (param $len i32)
    (local $r i32) (local $end i32) (local $end4 i32) (local $lo v128) (local $hi v128) (local $v v128) (local $s f64)
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $end (i32.add (local.get $x) (i32.shl (local.get $len) (i32.const 2))))
        (local.set $end4 (i32.add (local.get $x) (i32.shl (i32.and (local.get $len) (i32.const -4)) (i32.const 2))))
        (local.set $lo (v128.const i32x4 0 0 0 0))
        (local.set $hi (v128.const i32x4 0 0 0 0))
        (block $vectorsDone
          (loop $vectors
            (br_if $vectorsDone (i32.ge_u (local.get $x) (local.get $end4)))
            (local.set $v (v128.load (local.get $x)))
            (local.set $lo (f64x2.add (local.get $lo) (f64x2.promote_low_f32x4 (local.get $v))))
            (local.set $hi (f64x2.add (local.get $hi) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v)))))
            (local.set $x (i32.add (local.get $x) (i32.const 16)))
            (br $vectors)))
        (local.set $s (f64.add
          (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo)))
          (f64.add (f64x2.extract_lane 0 (local.get $hi)) (f64x2.extract_lane 1 (local.get $hi)))))
        (block $tailDone
          (loop $tail
            (br_if $tailDone (i32.ge_u (local.get $x) (local.get $end)))
            (local.set $s (f64.add (local.get $s) (f64.promote_f32 (f32.load (local.get $x)))))
            (local.set $x (i32.add (local.get $x) (i32.const 4)))
            (br $tail)))
        (f32.store (local.get $o) (f32.demote_f64 (local.get $s)))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop))))

  ;; The sum of squares of n float32 values in float64, in the order of Note [global norm order]
  ;; (src/optim/spec.ts): four partial sums over the elements i = k mod 4, the lanes of $lo (k = 0, 1)
  ;; and $hi (k = 2, 3), written to $o as four float64 for the caller to finish (the tail goes into
  ;; the first). Squares and sums round in float64 as the TypeScript loop's do, so the two agree bit
  ;; for bit (NaN payloads aside).
  (func (export "sumSquares") (param $x i32) (param $n i32) (param $o i32)
    (local $end4 i32) (local $lo v128) (local $hi v128) (local $v v128) (local $h v128)
    (local.set $end4 (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $x) (local.get $end4)))
        (local.set $v (f64x2.promote_low_f32x4 (v128.load (local.get $x))))
        (local.set $h (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15
          (v128.load (local.get $x)) (v128.load (local.get $x)))))
        (local.set $lo (f64x2.add (local.get $lo) (f64x2.mul (local.get $v) (local.get $v))))
        (local.set $hi (f64x2.add (local.get $hi) (f64x2.mul (local.get $h) (local.get $h))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $vectors)))
    (v128.store (local.get $o) (local.get $lo))
    (v128.store offset=16 (local.get $o) (local.get $hi)))

  ;; Column sums of a rows x cols matrix into float64 partial sums at $acc (cols rounded up to 4),
  ;; rounded once at the end. A row's last vector reads into the next row: those lanes land in the
  ;; padding of $acc and are dropped.
  (func (export "sumCols") (param $x i32) (param $o i32) (param $rows i32) (param $cols i32) (param $acc i32)
    (local $r i32) (local $p i32) (local $q i32) (local $end i32) (local $v v128)
    (local.set $end (i32.add (local.get $acc)
      (i32.shl (i32.and (i32.add (local.get $cols) (i32.const 3)) (i32.const -4)) (i32.const 3))))
    (memory.fill (local.get $acc) (i32.const 0) (i32.sub (local.get $end) (local.get $acc)))
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $p (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $cols)) (i32.const 2))))
        (local.set $q (local.get $acc))
        (block $rowDone
          (loop $vectors
            (br_if $rowDone (i32.ge_u (local.get $q) (local.get $end)))
            (local.set $v (v128.load (local.get $p)))
            (v128.store offset=0 (local.get $q)
              (f64x2.add (v128.load offset=0 (local.get $q)) (f64x2.promote_low_f32x4 (local.get $v))))
            (v128.store offset=16 (local.get $q)
              (f64x2.add (v128.load offset=16 (local.get $q)) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v)))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (local.set $q (i32.add (local.get $q) (i32.const 32)))
            (br $vectors)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop)))
    (local.set $q (local.get $acc))
    (block $roundDone
      (loop $round
        (br_if $roundDone (i32.ge_u (local.get $q) (local.get $end)))
        (v128.store (local.get $o) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (v128.load offset=0 (local.get $q)))
          (f32x4.demote_f64x2_zero (v128.load offset=16 (local.get $q)))))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (local.set $q (i32.add (local.get $q) (i32.const 32)))
        (br $round))))

  ;; The TypeScript max rule: v > m or v is NaN ? v : m.
  (func $maxRule (param $m f32) (param $v f32) (result f32)
    (select (local.get $v) (local.get $m)
      (i32.or (f32.gt (local.get $v) (local.get $m)) (f32.ne (local.get $v) (local.get $v)))))

  (func (export "maxRows") (param $x i32) (param $o i32) (param $rows i32) (param $len i32)
    (local $r i32) (local $end i32) (local $end4 i32) (local $m v128) (local $v v128) (local $s f32)
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $end (i32.add (local.get $x) (i32.shl (local.get $len) (i32.const 2))))
        (local.set $end4 (i32.add (local.get $x) (i32.shl (i32.and (local.get $len) (i32.const -4)) (i32.const 2))))
        (local.set $m (v128.const f32x4 -inf -inf -inf -inf))
        (block $vectorsDone
          (loop $vectors
            (br_if $vectorsDone (i32.ge_u (local.get $x) (local.get $end4)))
            (local.set $v (v128.load (local.get $x)))
            (local.set $m (v128.bitselect (local.get $v) (local.get $m)
              (v128.or (f32x4.gt (local.get $v) (local.get $m)) (f32x4.ne (local.get $v) (local.get $v)))))
            (local.set $x (i32.add (local.get $x) (i32.const 16)))
            (br $vectors)))
        (local.set $s (call $maxRule (f32.const -inf) (f32x4.extract_lane 0 (local.get $m))))
        (local.set $s (call $maxRule (local.get $s) (f32x4.extract_lane 1 (local.get $m))))
        (local.set $s (call $maxRule (local.get $s) (f32x4.extract_lane 2 (local.get $m))))
        (local.set $s (call $maxRule (local.get $s) (f32x4.extract_lane 3 (local.get $m))))
        (block $tailDone
          (loop $tail
            (br_if $tailDone (i32.ge_u (local.get $x) (local.get $end)))
            (local.set $s (call $maxRule (local.get $s) (f32.load (local.get $x))))
            (local.set $x (i32.add (local.get $x) (i32.const 4)))
            (br $tail)))
        (f32.store (local.get $o) (local.get $s))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop))))

  ;; Column maxima of a rows x cols matrix, row by row in order (so bitwise equal to TypeScript).
  (func (export "maxCols") (param $x i32) (param $o i32) (param $rows i32) (param $cols i32)
    (local $r i32) (local $p i32) (local $q i32) (local $end i32) (local $v v128) (local $m v128)
    (local.set $end (i32.add (local.get $o)
      (i32.shl (i32.and (i32.add (local.get $cols) (i32.const 3)) (i32.const -4)) (i32.const 2))))
    (local.set $q (local.get $o))
    (block $filled
      (loop $fill
        (br_if $filled (i32.ge_u (local.get $q) (local.get $end)))
        (v128.store (local.get $q) (v128.const f32x4 -inf -inf -inf -inf))
        (local.set $q (i32.add (local.get $q) (i32.const 16)))
        (br $fill)))
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $p (i32.add (local.get $x) (i32.shl (i32.mul (local.get $r) (local.get $cols)) (i32.const 2))))
        (local.set $q (local.get $o))
        (block $rowDone
          (loop $vectors
            (br_if $rowDone (i32.ge_u (local.get $q) (local.get $end)))
            (local.set $v (v128.load (local.get $p)))
            (local.set $m (v128.load (local.get $q)))
            (v128.store (local.get $q) (v128.bitselect (local.get $v) (local.get $m)
              (v128.or (f32x4.gt (local.get $v) (local.get $m)) (f32x4.ne (local.get $v) (local.get $v)))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (local.set $q (i32.add (local.get $q) (i32.const 16)))
            (br $vectors)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop))))

  ;; Note [wasm softmax]
  ;; Per row of `len`: max m (NaN-propagating; 0 when the row is all -inf, as in TypeScript), then
  ;; e = exp(x - m) in float32 (Cephes' expf: Cody-Waite reduction and a degree-6 polynomial, about
  ;; 1 ulp; 0 below -87.3, NaN for NaN) and its float64 sum s in lanes (Note [wasm reduction order]).
  ;; softmax = float32(e / s) in float64; logSoftmax = float32((x - m) - log(s)) in float64, log taken
  ;; by the caller (JavaScript's Math.log) between logSoftmaxSums and logSoftmaxFinish. A row with a
  ;; NaN or +inf gives NaN everywhere, as in TypeScript.

  ;; The max of a row, NaN-propagating, 0 for -inf.
  (func $rowMax (param $x i32) (param $len i32) (result f32)
    (local $end i32) (local $end4 i32) (local $m v128) (local $s f32)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $len) (i32.const 2))))
    (local.set $end4 (i32.add (local.get $x) (i32.shl (i32.and (local.get $len) (i32.const -4)) (i32.const 2))))
    (local.set $m (v128.const f32x4 -inf -inf -inf -inf))
    (block $vectorsDone
      (loop $vectors
        (br_if $vectorsDone (i32.ge_u (local.get $x) (local.get $end4)))
        (local.set $m (f32x4.max (local.get $m) (v128.load (local.get $x))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $vectors)))
    (local.set $s (f32.max (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
                           (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))
    (block $tailDone
      (loop $tail
        (br_if $tailDone (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $s (f32.max (local.get $s) (f32.load (local.get $x))))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (br $tail)))
    (select (f32.const 0) (local.get $s) (f32.eq (local.get $s) (f32.const -inf))))

  ;; o = exp(x - m) over a row (whole vectors; lanes past len are written but not summed); returns
  ;; the float64 sum.
  (func $expRow (param $x i32) (param $o i32) (param $len i32) (param $max f32) (result f64)
    (local $i i32) (local $mv v128) (local $v v128) (local $f v128) (local $p v128) (local $under v128)
    (local $lo v128) (local $hi v128)
    (local.set $mv (f32x4.splat (local.get $max)))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $v (f32x4.sub (v128.load (local.get $x)) (local.get $mv)))
        (local.set $under (f32x4.lt (local.get $v) (v128.const f32x4 -87.33654 -87.33654 -87.33654 -87.33654)))
        (local.set $v (f32x4.max (local.get $v) (v128.const f32x4 -87.33654 -87.33654 -87.33654 -87.33654)))
        (local.set $f (f32x4.nearest (f32x4.mul (local.get $v) (v128.const f32x4 1.44269504 1.44269504 1.44269504 1.44269504))))
        (local.set $v (f32x4.sub (f32x4.sub (local.get $v) (f32x4.mul (local.get $f) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375)))
                                 (f32x4.mul (local.get $f) (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))))
        (local.set $p (f32x4.add (f32x4.mul (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4) (local.get $v)) (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $v)) (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $v)) (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $v)) (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $v)) (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
        (local.set $p (f32x4.add (f32x4.add (f32x4.mul (local.get $p) (f32x4.mul (local.get $v) (local.get $v)))
                                            (local.get $v)) (v128.const f32x4 1 1 1 1)))
        ;; times 2^f, built in the exponent bits; then +0 where x - m < -87.3
        (local.set $p (v128.andnot
          (f32x4.mul (local.get $p)
            (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $f)) (v128.const i32x4 127 127 127 127))
                       (i32.const 23)))
          (local.get $under)))
        (v128.store (local.get $o) (local.get $p))
        ;; only lanes i + j < len count
        (local.set $p (v128.and (local.get $p)
          (i32x4.lt_s (i32x4.add (v128.const i32x4 0 1 2 3) (i32x4.splat (local.get $i))) (i32x4.splat (local.get $len)))))
        (local.set $lo (f64x2.add (local.get $lo) (f64x2.promote_low_f32x4 (local.get $p))))
        (local.set $hi (f64x2.add (local.get $hi) (f64x2.promote_low_f32x4
          (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $p) (local.get $p)))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $vectors)))
    (f64.add (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo)))
             (f64.add (f64x2.extract_lane 0 (local.get $hi)) (f64x2.extract_lane 1 (local.get $hi)))))

  (func (export "softmax") (param $x i32) (param $o i32) (param $rows i32) (param $len i32)
    (local $r i32) (local $q i32) (local $end i32) (local $s v128) (local $v v128)
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $s (f64x2.splat
          (call $expRow (local.get $x) (local.get $o) (local.get $len) (call $rowMax (local.get $x) (local.get $len)))))
        ;; o = float32(e / s), a row at a time so the lanes past the row are overwritten by the next
        (local.set $q (local.get $o))
        (local.set $end (i32.add (local.get $o) (i32.shl (local.get $len) (i32.const 2))))
        (block $scaled
          (loop $scale
            (br_if $scaled (i32.ge_u (local.get $q) (local.get $end)))
            (local.set $v (v128.load (local.get $q)))
            (v128.store (local.get $q) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (f32x4.demote_f64x2_zero (f64x2.div (f64x2.promote_low_f32x4 (local.get $v)) (local.get $s)))
              (f32x4.demote_f64x2_zero (f64x2.div (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v))) (local.get $s)))))
            (local.set $q (i32.add (local.get $q) (i32.const 16)))
            (br $scale)))
        (local.set $x (i32.add (local.get $x) (i32.shl (local.get $len) (i32.const 2))))
        (local.set $o (local.get $end))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop))))

  ;; First half of logSoftmax: each row's max (float32, at $maxes) and sum of exp (float64, at $sums);
  ;; $o is scratch.
  (func (export "logSoftmaxSums") (param $x i32) (param $o i32) (param $rows i32) (param $len i32)
                                  (param $maxes i32) (param $sums i32)
    (local $r i32) (local $m f32)
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $m (call $rowMax (local.get $x) (local.get $len)))
        (f32.store (local.get $maxes) (local.get $m))
        (f64.store (local.get $sums) (call $expRow (local.get $x) (local.get $o) (local.get $len) (local.get $m)))
        (local.set $x (i32.add (local.get $x) (i32.shl (local.get $len) (i32.const 2))))
        (local.set $maxes (i32.add (local.get $maxes) (i32.const 4)))
        (local.set $sums (i32.add (local.get $sums) (i32.const 8)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop))))

  ;; Second half: o = float32((x - max) - logSum) in float64, a row at a time.
  (func (export "logSoftmaxFinish") (param $x i32) (param $o i32) (param $rows i32) (param $len i32)
                                    (param $maxes i32) (param $logSums i32)
    (local $r i32) (local $end i32) (local $m v128) (local $l v128) (local $v v128)
    (block $done
      (loop $rowsLoop
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $m (f64x2.splat (f64.promote_f32 (f32.load (local.get $maxes)))))
        (local.set $l (f64x2.splat (f64.load (local.get $logSums))))
        (local.set $end (i32.add (local.get $o) (i32.shl (local.get $len) (i32.const 2))))
        (block $rowDone
          (loop $vectors
            (br_if $rowDone (i32.ge_u (local.get $o) (local.get $end)))
            (local.set $v (v128.load (local.get $x)))
            (v128.store (local.get $o) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (f32x4.demote_f64x2_zero
                (f64x2.sub (f64x2.sub (f64x2.promote_low_f32x4 (local.get $v)) (local.get $m)) (local.get $l)))
              (f32x4.demote_f64x2_zero
                (f64x2.sub (f64x2.sub (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v))) (local.get $m)) (local.get $l)))))
            (local.set $x (i32.add (local.get $x) (i32.const 16)))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $vectors)))
        ;; the row's last vector may have run past it: restart both at the next row
        (local.set $x (i32.sub (local.get $x) (i32.sub (local.get $o) (local.get $end))))
        (local.set $o (local.get $end))
        (local.set $maxes (i32.add (local.get $maxes) (i32.const 4)))
        (local.set $logSums (i32.add (local.get $logSums) (i32.const 8)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowsLoop))))

  ;; @include window.wat
)
