// ModelStreamInfer interop check with @grpc/grpc-js and @grpc/proto-loader,
// a gRPC client nobody here wrote, against the built-in rnn-stream model.
//
// Usage: node grpc_stream_client.mjs HOST:PORT PROTO_FILE STEPS
// Prints "N passed, N failed" and exits non-zero on any failure.
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const [addr, protoFile, stepsArg] = process.argv.slice(2);
const steps = Number(stepsArg);
const def = protoLoader.loadSync(protoFile, { keepCase: true, longs: Number, defaults: true });
const inference = grpc.loadPackageDefinition(def).inference;
const client = new inference.GRPCInferenceService(addr, grpc.credentials.createInsecure());

let passed = 0, failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) passed++;
  else { failed++; console.error(`FAIL ${name}: ${detail}`); }
};

function request(id, n) {
  const x = new Float32Array(n * 8).map((_, i) => (i % 5) / 4);
  return {
    model_name: "rnn-stream",
    id,
    inputs: [{ name: "x", datatype: "FP32", shape: [1, n, 8] }],
    raw_input_contents: [Buffer.from(x.buffer)],
  };
}

// One request on the stream: every step arrives as its own response, in order.
function wholeStream() {
  return new Promise((resolve) => {
    const call = client.ModelStreamInfer();
    const seen = [];
    call.on("data", (resp) => {
      check("no error message", resp.error_message === "", resp.error_message);
      const r = resp.infer_response;
      const names = r.outputs.map((o) => o.name);
      const step = r.raw_output_contents[names.indexOf("step")].readBigInt64LE(0);
      seen.push(Number(step));
      check("request id echoed", r.id === "whole", r.id);
      if (seen.length === steps) call.end();
    });
    call.on("error", (e) => { check("stream error", false, e.message); resolve(); });
    call.on("end", () => {
      check("one response per step, in order", JSON.stringify(seen) === JSON.stringify([...Array(steps).keys()]), seen);
      resolve();
    });
    call.write(request("whole", steps));
  });
}

// A client that cancels mid-stream gets CANCELLED, and the server goes on serving.
function cancelled() {
  return new Promise((resolve) => {
    const call = client.ModelStreamInfer();
    let got = 0;
    call.on("data", () => { if (++got === 2) call.cancel(); });
    call.on("error", () => {}); // the status below carries the outcome
    call.on("status", (st) => {
      check("cancel reported as CANCELLED", st.code === grpc.status.CANCELLED, st.code);
      check("cancelled after two chunks", got >= 2, got);
      resolve();
    });
    call.write(request("cancel", 10000));
  });
}

await wholeStream();
await cancelled();
await wholeStream();
client.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
