// minimum shares its rule with maximum (./maximum.ts), where both are defined.
export { minimum } from './maximum.ts';
