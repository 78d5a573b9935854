"""eventide_fuzz_test: one libFuzzer target that is also a corpus test.

    load("//tools/fuzz:fuzz.bzl", "eventide_fuzz_test")

    eventide_fuzz_test(
        name = "buffer_fuzzer",
        srcs = ["buffer_fuzzer.cc"],  # defines LLVMFuzzerTestOneInput
        deps = [":buffer", "//tools/fuzz:fuzz_support"],
    )

The seed corpus is every file under `testdata/<name>_corpus/` of the
package (a different directory may be given as `corpus`). An optional
libFuzzer dictionary `testdata/<name>.dict` is picked up by run_fuzzers.sh.

 - Normal builds (gcc; plain and --config=asan): a cc_test linked with
   //tools/fuzz:replay_main, which runs the function on every seed file, so
   `bazel test` and the ASan CI run check the corpus, regression seeds
   included.
 - --config=fuzz (clang): the same cc_test linked with libFuzzer's main. Run
   by `bazel test` it only executes the seed files given as arguments (no
   fuzzing); tools/fuzz/run_fuzzers.sh fuzzes it for a bounded time.

Every such target is tagged "fuzz": `bazel query 'attr(tags, "[\\[ ]fuzz[,\\]]", //...)'`.
"""

def eventide_fuzz_test(
        name,
        srcs,
        deps = [],
        corpus = None,
        size = "small",
        tags = [],
        **kwargs):
    if corpus == None:
        corpus = "testdata/%s_corpus" % name
    files = native.glob([corpus + "/**"])
    if not files:
        fail("eventide_fuzz_test %s: no seed files under %s" % (name, corpus))
    native.filegroup(
        name = name + "_corpus",
        testonly = True,
        srcs = files,
    )
    native.cc_test(
        name = name,
        size = size,
        srcs = srcs,
        deps = deps + select({
            "//tools/fuzz:fuzzing": [],
            "//conditions:default": ["//tools/fuzz:replay_main"],
        }),
        linkopts = select({
            "//tools/fuzz:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        data = [":" + name + "_corpus"],
        args = ["$(locations :%s_corpus)" % name],
        tags = tags + ["fuzz"],
        **kwargs
    )
