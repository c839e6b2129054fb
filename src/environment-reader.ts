/**
 * Typed readers of environment variables for src/config.ts. Each read returns the value (or the
 * declared default) and records what is wrong with it, so every problem is reported at once.
 * The texts are JSON Schema's wording as Ajv writes it (`PORT must be integer`, `… must match
 * pattern "…"`), which is what the broker printed when config.ts validated with Ajv: operators'
 * scripts and the tests match on them (README, Configuration).
 */

export interface IntegerRule {
  min: number;
  max: number;
  default: number;
}

export interface TextRule {
  minLength?: number;
  maxLength?: number;
  /** A regular expression's source, matched with the `u` flag as JSON Schema does. */
  pattern?: string;
}

/** The values a boolean switch accepts; the empty string is false. */
const FLAG_VALUES = ['1', '0', 'true', 'false', ''] as const;

export class EnvironmentReader {
  readonly problems: string[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  /** A whole number within [min, max]. */
  integer(name: string, rule: IntegerRule): number {
    const raw = this.env[name];
    if (raw === undefined) return rule.default;
    const value = Number(raw);
    // Any numeric text without a fraction, as JSON Schema's coercion reads it: ' 8080 ', '0x50'
    // and '1e3' pass; 'Infinity' is no whole number, so it cannot slip past the bounds.
    const whole = raw !== '' && Number.isInteger(value);
    if (!whole) {
      this.problems.push(`${name} must be integer`);
      return rule.default;
    }
    if (value < rule.min) this.problems.push(`${name} must be >= ${rule.min}`);
    if (value > rule.max) this.problems.push(`${name} must be <= ${rule.max}`);
    return value;
  }

  /** A string with a default. */
  text(name: string, rule: TextRule & { default: string }): string {
    return this.optionalText(name, rule) ?? rule.default;
  }

  /** A string, or undefined when unset. */
  optionalText(name: string, rule: TextRule): string | undefined {
    const raw = this.env[name];
    if (raw === undefined) return undefined;
    // JSON Schema counts characters as code points.
    const length = [...raw].length;
    if (rule.maxLength !== undefined && length > rule.maxLength) {
      this.problems.push(`${name} must NOT have more than ${rule.maxLength} characters`);
    }
    if (rule.minLength !== undefined && length < rule.minLength) {
      this.problems.push(`${name} must NOT have fewer than ${rule.minLength} characters`);
    }
    if (rule.pattern !== undefined && !new RegExp(rule.pattern, 'u').test(raw)) {
      this.problems.push(`${name} must match pattern "${rule.pattern}"`);
    }
    return raw;
  }

  /** One of `values`. */
  oneOf<const V extends readonly string[]>(
    name: string,
    values: V,
    fallback: V[number],
  ): V[number] {
    const raw = this.env[name];
    if (raw === undefined) return fallback;
    const value = values.find((allowed) => allowed === raw);
    if (value !== undefined) return value;
    const shown = values.map((allowed) => (allowed === '' ? "'' (empty)" : allowed));
    this.problems.push(`${name} must be one of: ${shown.join(', ')}`);
    return fallback;
  }

  /** A switch: `1` or `true` is on; `0`, `false`, empty or unset is off. */
  flag(name: string): boolean {
    const value = this.oneOf(name, FLAG_VALUES, 'false');
    return value === '1' || value === 'true';
  }

  /** Comma-separated entries, blanks dropped; unset is none. */
  list(name: string): string[] {
    return (this.env[name] ?? '')
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== '');
  }
}
