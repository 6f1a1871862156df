// TypeScript compiled to CommonJS: `import = require` of the ES module package, which Node >= 20.19
// loads synchronously and TypeScript's nodenext resolution types.
import assert = require('node:assert/strict');
import backflow = require('backflow-runtime');

const t: backflow.Tensor = backflow.tensor([1, 2, 3]);
assert.equal(backflow.eager.sum(t).item(), 6);
console.log('consumer-cjs.cts: require() of backflow-runtime from TypeScript compiled to CommonJS');
