// Every test file runs the engine's calls with a poisoned call pool (Note [call storages]): a storage
// used after it went back to the pool reads NaN, which the comparisons with the reference then show.
import { configureCallPool } from '../../src/autodiff/call-pool.ts';

configureCallPool({ poison: true });
