import neostandard from 'neostandard'

/**
 * Names of values that hold secrets, signatures or MACs (`sig`, `expectedSig`, `adminToken`,
 * `mac`, …): compared only in constant time (timingSafeEqual, or secretsEqual in
 * src/services/admin.ts), never with == or ===.
 */
const SECRET = '/(^|[a-z_])(sig|signature|mac|secret|token|digest)$|^(admin|given|expected)$/i'
/** Comparing with undefined or null asks whether a secret is there, not what it is. */
const presence = (other) => `:not([${other}.type='Identifier'][${other}.name='undefined']):not([${other}.type='Literal'][${other}.raw='null'])`
const secretOperand = (side, other) => [
  `BinaryExpression[operator=/^[!=]==?$/][${side}.type='Identifier'][${side}.name=${SECRET}]${presence(other)}`,
  `BinaryExpression[operator=/^[!=]==?$/][${side}.type='MemberExpression'][${side}.property.name=${SECRET}]${presence(other)}`,
]

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'data/**', '.scratch/**', 'src/client/schema.ts'] }),
  {
    rules: {
      // A fire-and-forget promise is written `void promise` and handles its own errors.
      'no-void': ['error', { allowAsStatement: true }],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-syntax': ['error',
        ...[...secretOperand('left', 'right'), ...secretOperand('right', 'left')].map((selector) => ({
          selector,
          message: 'Compare secrets, signatures and MACs in constant time (timingSafeEqual or secretsEqual), never with == or ===.',
        })),
      ],
    },
  },
  {
    // TypeBox's idiom: a schema and its static type share one name.
    files: ['src/contract/generated.ts'],
    rules: { '@typescript-eslint/no-redeclare': 'off' },
  },
]
